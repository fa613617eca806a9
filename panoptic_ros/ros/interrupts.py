"""SIGINT/SIGTERM as a KeyboardInterrupt that is never lost (pure Python, no imports of note).

Why: a signal handler's exception raised while the interpreter runs a weakref callback or a
``__del__`` (importlib's module-lock callbacks run all the time while rclpy, OpenCV or ONNX
Runtime import) is printed as "Exception ignored ... Traceback" and dropped, so a command or
the node would run on after being told to stop. :class:`Interrupts` also remembers the signal;
the owner calls :meth:`Interrupts.raise_if_pending` at its checkpoints, and the dropped
exception is not printed.

A signal can also surface as another exception: a KeyboardInterrupt raised while rclpy converts a
received message to Python (the message class's ``__init__`` is Python code) leaves the converter
with a NULL result, which pybind11 reports as ``RuntimeError: Unable to convert call argument
'0' to Python object`` from ``executor.spin_once`` (Jazzy and Kilted; CI saw a Ctrl-C under
``ros2 launch`` exit 1 this way). :attr:`Interrupts.received` tells the owner that any exception
after a signal is the stop, not a failure.

Used by ``panoptic-ros`` (cli), ``panoptic_node``'s start (ros/node_main.py) and its spin loop
(ros/node.py).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


class Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt and are remembered until delivered."""

    def __init__(self) -> None:
        #: a signal whose KeyboardInterrupt :meth:`raise_if_pending` has not raised yet
        self.pending = False
        #: a signal arrived since :meth:`install` (cleared by its restore function only)
        self.received = False

    def raise_if_pending(self) -> None:
        """Raise the KeyboardInterrupt of a signal whose own one Python dropped (once)."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def install(self) -> Callable[[], None]:
        """Install the handlers and the unraisable-hook; returns a function that puts the
        previous ones back (a no-op outside the main thread, where nothing can be set)."""

        def handler(signum, frame) -> None:  # noqa: ARG001
            self.pending = self.received = True
            raise KeyboardInterrupt(f"signal {signum}")

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
            self.pending = self.received = False

        return restore
