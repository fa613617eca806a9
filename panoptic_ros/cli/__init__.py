"""``panoptic-ros`` command line: one subcommand per module in panoptic_ros.cli.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported lazily so ``panoptic-ros eval`` never pays for
importing rclpy and ``panoptic-ros replay`` never pays for torch. Progress goes to stderr;
the last stdout line of every command is a machine-readable ``key=value`` summary.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import traceback

from panoptic_ros.ros.interrupts import Interrupts

#: subcommand -> module under panoptic_ros.cli
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "train": "train",
    "eval": "evaluate",
    "export": "export",
    "check-onnx": "check_onnx",
    "build-engine": "build_engine",
    "bench": "bench",
    "replay": "replay",
    "process-bag": "process_bag",
}


def _load(module: str):
    return importlib.import_module(f"panoptic_ros.cli.{module}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panoptic-ros", description="panoptic_ros tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, module in COMMANDS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name)
            continue
        mod = _load(module)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Whatever happens (a failure, Ctrl-C or SIGTERM at any point, also
    while a model loads or a module imports) the last stdout line is a ``key=value`` summary:
    the command's own, or ``command=NAME error=REASON exit=N`` when it printed none. An
    interrupt exits 130 without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    restore_signals = _INTERRUPTS.install()
    watch = _SummaryWatch(sys.stdout)
    sys.stdout = watch
    name = argv[0] if argv and argv[0] in COMMANDS else "panoptic-ros"
    reason = "failed"
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help(sys.stderr)
            rc = 2
        else:
            rc = int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        rc, reason = 130, "interrupted"
    except SystemExit as exc:  # argparse: usage errors (2), --help (0)
        rc = exc.code if isinstance(exc.code, int) else 2
        reason = "usage"
    except Exception as exc:  # a bug: show it, and still end with the summary line
        traceback.print_exc()
        rc, reason = 2, type(exc).__name__
    finally:
        sys.stdout = watch.inner
        restore_signals()  # main() called in-process (tests): leave things as they were
    if rc != 0 and not watch.summary_printed():
        print(f"command={name} error={reason} exit={rc}")
    return rc


_SUMMARY = re.compile(r"^\S+=\S*( \S+=\S*)*$")


class _SummaryWatch:
    """stdout as it is, remembering the last line written (to tell whether a command ended
    with its summary line)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self._last = ""
        self._tail = ""

    def write(self, text: str) -> int:
        n = self.inner.write(text)
        lines = (self._tail + text).split("\n")
        self._tail = lines[-1]
        done = [line for line in lines[:-1] if line.strip()]
        if done:
            self._last = done[-1]
        return n

    def summary_printed(self) -> bool:
        return bool(_SUMMARY.match((self._tail.strip() or self._last).strip()))

    def __getattr__(self, attr: str):
        return getattr(self.inner, attr)


#: SIGINT/SIGTERM of this process (ros/interrupts.py): also the ones Python drops
_INTERRUPTS = Interrupts()


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a SIGINT/SIGTERM that Python dropped (it landed in a
    weakref callback while a model's libraries imported). Long commands call this at their
    checkpoints: after loading the model, per frame."""
    _INTERRUPTS.raise_if_pending()


if __name__ == "__main__":
    sys.exit(main())
