"""Console-script entry of ``panoptic_node`` (``ros2 run``, ``ros2 launch``, the venv's bin/).

Why a module of its own: importing the node pulls in rclpy, numpy, OpenCV and ONNX Runtime, which
takes a second or more. A Ctrl-C in that window (``ros2 launch`` forwards SIGINT at any time) used to
end in a KeyboardInterrupt traceback and exit -2. Here the import itself is inside the handler, so an
early interrupt exits quietly with the same status as a stop after start-up (0).

SIGINT and SIGTERM both count, and also when Python drops the KeyboardInterrupt (ros/interrupts.py):
the node would otherwise start anyway, after its launch file had been told to stop. Such a signal
is honoured once the imports return.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from panoptic_ros.ros.interrupts import Interrupts


def _load_node() -> Callable[[], int]:
    from panoptic_ros.ros.node import main as node_main

    return node_main


def main(load: Callable[[], Callable[[], int]] = _load_node) -> int:
    """Import the node (``load``) with SIGINT/SIGTERM ending the start quietly, then run it."""
    interrupts = Interrupts()
    # not put back: the node's main() installs its own handlers (and ignores both signals
    # while it releases), and the process ends when it returns
    interrupts.install()
    try:
        node_main = load()
        interrupts.raise_if_pending()  # one Python dropped during the imports
        return node_main()
    except KeyboardInterrupt:
        print("panoptic_node: interrupted while starting", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
