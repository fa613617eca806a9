"""The tree is ruff-clean (ruff.toml at the repository root: lint rules and the formatter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> str | None:
    """ruff beside this interpreter (the venv's) first, else the one on PATH."""
    here = Path(sys.executable).with_name("ruff")
    return str(here) if here.is_file() else shutil.which("ruff")


RUFF = _ruff()
pytestmark = pytest.mark.skipif(
    RUFF is None, reason="ruff is not installed (pip install ruff; see scripts/requirements.txt)"
)


@pytest.mark.parametrize(
    "args", [["check", "--no-fix", "."], ["format", "--check", "."]], ids=["check", "format"]
)
def test_ruff(args):
    r = subprocess.run([RUFF, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (
        f"ruff {' '.join(args)} (fix: ruff {args[0]} .):\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
    )
