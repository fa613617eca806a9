"""SIGINT/SIGTERM as a KeyboardInterrupt that is never lost (pure Python, no imports of note).

Why: a signal handler's exception raised while the interpreter runs a weakref callback or a
``__del__`` (importlib's module-lock callbacks run all the time while rclpy, OpenCV or ONNX
Runtime import) is printed as "Exception ignored ... Traceback" and dropped, so a command or
the node would run on after being told to stop. :class:`Interrupts` also remembers the signal;
the owner calls :meth:`Interrupts.raise_if_pending` at its checkpoints, and the dropped
exception is not printed. Used by ``panoptic-ros`` (cli) and ``panoptic_node``'s start
(ros/node_main.py); the node's spin loop has its own stop event (ros/node.py ``_STOP``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


class Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt and are remembered until delivered."""

    def __init__(self) -> None:
        self.pending = False

    def raise_if_pending(self) -> None:
        """Raise the KeyboardInterrupt of a signal whose own one Python dropped (once)."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def install(self) -> Callable[[], None]:
        """Install the handlers and the unraisable-hook; returns a function that puts the
        previous ones back (a no-op outside the main thread, where nothing can be set)."""

        def handler(signum, frame) -> None:  # noqa: ARG001
            self.pending = True
            raise KeyboardInterrupt

        previous_hook = sys.unraisablehook

        def hook(unraisable) -> None:  # our own interrupt, dropped: delivered later, not printed
            if self.pending and isinstance(unraisable.exc_value, KeyboardInterrupt):
                return
            previous_hook(unraisable)

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread
            return lambda: None
        sys.unraisablehook = hook

        def restore() -> None:
            for s, h in previous.items():
                signal.signal(s, h)
            sys.unraisablehook = previous_hook
            self.pending = False

        return restore
