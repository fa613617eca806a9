"""The ``panoptic-ros`` command run as a user runs it (imported like ``pq_random``: ``from
cli_helpers import run_cli, summary``): the installed console script in a subprocess, and the
``key=value`` summary line every command ends its stdout with. No rclpy, no model here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).with_name("panoptic-ros")


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``panoptic-ros ARGS`` to the end (text stdout/stderr captured); ``kw`` goes to
    ``subprocess.run``. A run past ``timeout`` s fails the test with ``TimeoutExpired``."""
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout, **kw)


def summary(stdout: str) -> dict[str, str]:
    """The summary line (the last line of ``stdout``) as a dict; every word must be key=value."""
    last = stdout.strip().splitlines()[-1]
    pairs = [item.split("=", 1) for item in last.split()]
    assert all(len(p) == 2 for p in pairs), last
    return dict(pairs)
