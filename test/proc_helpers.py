"""A child process whose output a test reads (imported like ``pq_random``: ``from proc_helpers import
OutputProcess``). No rclpy here, so modules whose other tests run without ROS can use it at import.

:class:`OutputProcess` is the one place for what the DDS and launch tests each did by hand: start the
command with stdout and stderr merged, read its lines in a thread (so the pipe never fills and the
lines are there for assertions and failure messages while it runs), stop it with a signal and kill
it if it does not end in time (the test then fails with ``TimeoutExpired``: a hang is a failure).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading


def child_env(**extra: str) -> dict[str, str]:
    """This environment with unbuffered Python and plain (uncoloured) ROS log lines, plus ``extra``."""
    return dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", **extra)


class OutputProcess:
    """``cmd`` in a subprocess, its stdout+stderr lines collected in :attr:`lines` by a thread.

    ``popen_kw`` goes to ``subprocess.Popen`` (``env`` defaults to :func:`child_env`).
    """

    def __init__(self, cmd: list[str], **popen_kw) -> None:
        popen_kw.setdefault("env", child_env())
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen_kw
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def has(self, text: str) -> bool:
        """Whether any output line so far contains ``text``."""
        return any(text in ln for ln in list(self.lines))

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (a subclass may send it to its process group)."""
        self.proc.send_signal(sig)

    def end(self, sig: int | None, timeout: float) -> int:
        """Send ``sig`` (``None``: close stdin instead), wait up to ``timeout`` s, return the exit
        status. Past the timeout: SIGKILL and re-raise ``TimeoutExpired``."""
        if self.proc.poll() is None:
            if sig is None:
                self.proc.stdin.close()
            else:
                self.signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
                raise
        self._reader.join(5)
        return self.proc.returncode
