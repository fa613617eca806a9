"""``panoptic-ros`` command line: one subcommand per module in panoptic_ros.cli.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported lazily so ``panoptic-ros eval`` never pays for
importing rclpy and ``panoptic-ros replay`` never pays for torch. Progress goes to stderr;
the last stdout line of every command is a machine-readable ``key=value`` summary.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
