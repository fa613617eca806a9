"""Console-script entry of ``panoptic_node`` (``ros2 run``, ``ros2 launch``, the venv's bin/).

Why a module of its own: importing the node pulls in rclpy, numpy, OpenCV and ONNX Runtime, which
takes a second or more. A Ctrl-C in that window (``ros2 launch`` forwards SIGINT at any time) used to
end in a KeyboardInterrupt traceback and exit -2. Here the import itself is inside the handler, so an
early interrupt exits quietly with the same status as a stop after start-up (0).
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from panoptic_ros.ros.node import main as node_main
    except KeyboardInterrupt:
        print("panoptic_node: interrupted while starting", file=sys.stderr)
        return 0
    return node_main()


if __name__ == "__main__":
    sys.exit(main())
