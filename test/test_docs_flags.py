"""Every ``--flag`` the docs give a ``panoptic-ros`` subcommand is an option of that subcommand.

Scanned: README.md and docs/*.md, each ``panoptic-ros COMMAND ...`` up to the end of its code span,
table cell or comment; and docs/performance.md's "Useful options" paragraph (bench options named
without the command). A renamed or dropped flag fails here instead of in a reader's terminal.
"""

from __future__ import annotations

import re
from pathlib import Path

from panoptic_ros.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _options(cmd: str) -> set[str]:
    parser = build_parser([cmd])
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices[cmd]._option_string_actions)


def test_documented_flags_exist():
    opts = {c: _options(c) for c in COMMANDS}
    names = "|".join(map(re.escape, COMMANDS))
    call = re.compile(rf"panoptic-ros ({names})\b([^`#|]*)")
    bad = []
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, line in enumerate(f.read_text().splitlines(), 1):
            for m in call.finditer(line):
                bad += [
                    f"{f.name}:{i}: panoptic-ros {m.group(1)} {flag}"
                    for flag in FLAG.findall(m.group(2))
                    if flag not in opts[m.group(1)]
                ]
    perf = (ROOT / "docs" / "performance.md").read_text()
    useful = perf.split("Useful options:", 1)[1].split("\n\n", 1)[0]
    flags = FLAG.findall(useful)
    assert len(flags) > 10, "the 'Useful options' paragraph moved"
    bad += [f"performance.md 'Useful options': bench {f}" for f in flags if f not in opts["bench"]]
    assert not bad, "\n".join(bad)
