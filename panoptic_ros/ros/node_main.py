"""Console-script entry of ``panoptic_node`` (``ros2 run``, ``ros2 launch``, the venv's bin/).

Why a module of its own: importing the node pulls in rclpy, numpy, OpenCV and ONNX Runtime, which
takes a second or more. A Ctrl-C in that window (``ros2 launch`` forwards SIGINT at any time) used to
end in a KeyboardInterrupt traceback and exit -2. Here the import itself is inside the handler, so an
early interrupt exits quietly with the same status as a stop after start-up (0).

SIGINT and SIGTERM both count, and also when Python drops the KeyboardInterrupt: a handler's
exception raised while the interpreter runs a weakref callback (importlib's module-lock callbacks
run all the time during imports) is printed as "Exception ignored ... Traceback" and lost, and the
node would start anyway, after its launch file had been told to stop. The handler therefore also
records the signal; it is honoured once the imports return, and the dropped exception is not
printed.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


def _load_node() -> Callable[[], int]:
    from panoptic_ros.ros.node import main as node_main

    return node_main


def main(load: Callable[[], Callable[[], int]] = _load_node) -> int:
    """Import the node (``load``) with SIGINT/SIGTERM ending the start quietly, then run it."""
    caught: list[int] = []

    def early(signum: int, frame) -> None:  # noqa: ARG001
        caught.append(signum)
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def hook(unraisable) -> None:  # our dropped interrupt: honoured below, not printed
        if caught and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        previous_hook(unraisable)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, early)
    sys.unraisablehook = hook
    try:
        node_main = load()
        if caught:  # the KeyboardInterrupt was dropped during the imports
            raise KeyboardInterrupt
        # ``early`` stays installed until the node's main() puts its own handlers in place
        return node_main()
    except KeyboardInterrupt:
        print("panoptic_node: interrupted while starting", file=sys.stderr)
        return 0
    finally:
        sys.unraisablehook = previous_hook


if __name__ == "__main__":
    sys.exit(main())
