"""Record live topics into a bag, like ``ros2 bag record`` (used by the demo and the tests)."""

from __future__ import annotations

from collections.abc import Sequence

from panoptic_ros.bags.messages import cdr_header_stamp, message_class
from panoptic_ros.bags.writer import BagWriter


class TopicRecorder:
    """Subscribe to topics (raw CDR, no deserialisation) and write what arrives into a BagWriter,
    with the receive time as log time, like ``ros2 bag record``. Spins its own thread.

    ``topics`` maps topic -> message type; ``latched`` topics are subscribed reliable +
    transient_local depth 1, the others reliable with ``depth``. ``stamps[topic]`` lists the
    header stamps received, in order.
    """

    def __init__(
        self,
        writer: BagWriter,
        topics: dict[str, str],
        *,
        latched: Sequence[str] = (),
        depth: int = 100,
        node_name: str = "panoptic_recorder",
    ) -> None:
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self.writer = writer
        self.stamps: dict[str, list[int]] = {t: [] for t in topics}
        self.last_arrival = 0.0
        self._lock = threading.Lock()
        self.node = rclpy.create_node(node_name)
        for t, mtype in topics.items():
            is_latched = t in latched
            writer.add_topic(t, mtype, qos="latched" if is_latched else "reliable")
            qos = QoSProfile(
                depth=1 if is_latched else depth,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL
                if is_latched
                else DurabilityPolicy.VOLATILE,
            )
            self.node.create_subscription(
                message_class(mtype), t, lambda data, t=t: self._on(t, data), qos, raw=True
            )
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=node_name, daemon=True)
        self._stop = False

    def _on(self, topic: str, data: bytes) -> None:
        import time as _time

        now = _time.time_ns()
        with self._lock:
            self.writer.write(topic, now, data)
            self.stamps[topic].append(cdr_header_stamp(data))
            self.last_arrival = _time.monotonic()

    def _spin(self) -> None:
        while not self._stop:
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down
                break

    def start(self) -> TopicRecorder:
        self._thread.start()
        return self

    def publisher_count(self, topic: str) -> int:
        return self.node.count_publishers(topic)

    def stop(self) -> None:
        self._stop = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._executor.remove_node(self.node)
        self.node.destroy_node()
