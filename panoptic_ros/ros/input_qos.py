"""QoS of the node's image subscriptions: fixed (``sensor_data``, ``reliable``) or ``auto``.

Why ``auto`` (the default): a camera driver publishing with ROS's default QoS is *reliable*. Its
frames reach a best-effort (``sensor_data``) subscription best effort, and without a large
shared-memory segment a 480x640 frame travels as UDP fragments of which one lost fragment loses
the frame (measured: 5-6 of 10 frames answered). A reliable subscription gets them all, but
cannot match a best-effort publisher at all. So ``auto`` does what rosbag2's recorder does: it
looks at the publishers on the input topic and subscribes reliable when every one of them is
reliable, best effort otherwise (also while there is none yet: best effort matches whatever
appears); transient_local when every publisher is transient_local, volatile otherwise. The node
decides on activation and again whenever the set of publishers changes
(:func:`publishers_key`), re-creating the subscription only when the decision changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

MODES = ("auto", "sensor_data", "reliable")
#: seconds between checks of the publishers on an ``auto`` input topic (a graph query, cheap)
RECHECK_PERIOD = 0.5


@dataclass(frozen=True)
class Decision:
    """The subscription's reliability and durability, and what they were decided from."""

    mode: str
    reliable: bool
    transient_local: bool = False
    publishers: int = 0
    reliable_publishers: int = 0

    @property
    def policies(self) -> tuple[bool, bool]:
        """What the subscription depends on (a changed publisher count alone changes nothing)."""
        return self.reliable, self.transient_local

    def profile(self) -> QoSProfile:
        """Keep last 1: the node only ever wants the newest frame of each camera."""
        return QoSProfile(
            depth=1,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE
            if self.reliable
            else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL
            if self.transient_local
            else DurabilityPolicy.VOLATILE,
        )

    def describe(self) -> str:
        """E.g. ``auto: reliable (2 publishers, all reliable)``; fixed modes give their name."""
        if self.mode != "auto":
            return self.mode
        what = "reliable" if self.reliable else "best effort"
        if self.transient_local:
            what += ", transient_local"
        if not self.publishers:
            why = "no publisher yet; matches any"
        elif self.reliable:
            why = f"{self.publishers} publisher{'s' if self.publishers > 1 else ''}, all reliable"
        else:
            why = (
                f"{self.publishers - self.reliable_publishers} of {self.publishers} "
                f"publisher{'s' if self.publishers > 1 else ''} best effort"
            )
        return f"auto: {what} ({why})"


def decide(mode: str, offered: Iterable[QoSProfile]) -> Decision:
    """The subscription QoS for ``mode`` given the QoS ``offered`` by the topic's publishers."""
    if mode not in MODES:
        raise ValueError(f"input_qos {mode!r} is not one of {', '.join(MODES)}")
    if mode != "auto":
        return Decision(mode, reliable=mode == "reliable")
    offered = list(offered)
    n_rel = sum(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
    durable = bool(offered) and all(
        q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered
    )
    return Decision(
        mode,
        reliable=bool(offered) and n_rel == len(offered),
        transient_local=durable,
        publishers=len(offered),
        reliable_publishers=n_rel,
    )


def publishers_key(infos: Iterable[Any]) -> frozenset:
    """Identity of a set of publishers (``TopicEndpointInfo``): endpoint GID and offered policies."""
    return frozenset(
        (
            bytes(i.endpoint_gid),
            int(i.qos_profile.reliability),
            int(i.qos_profile.durability),
        )
        for i in infos
    )
