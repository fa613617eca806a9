"""Bag records and their message types: errors, records, the typestore, (de)serialisation, stamps.

Messages in bags are the same rclpy message classes the node publishes, (de)serialised with
``rclpy.serialization`` (raw CDR, what DDS and ``ros2 bag`` carry), so a bag written offline
holds byte-identical messages to a live recording. ``rosbags`` supplies the message
definitions and type hashes written into bags (its ROS 2 typestore, plus vision_msgs
registered from ``interfaces/vision_msgs/msg/*.msg``), so the bags play with ``ros2 bag play``
and open in Foxglove.
"""

from __future__ import annotations

import importlib
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

PACKAGE_DIR = Path(__file__).resolve().parent.parent

# vision_msgs 4.x, field for field (comments dropped; they do not enter the type hash).
# Used only where interfaces/vision_msgs/msg is not available (installed package).
_VISION_MSGS_FALLBACK = {
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
    "VisionClass": "uint16 class_id\nstring class_name\n",
    "LabelInfo": "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
}


class BagError(RuntimeError):
    """A bag (or part of it) cannot be read or written; the message names file / topic / offset."""


class BagMessageError(BagError):
    """One message cannot be used (undecodable payload, unknown type)."""

    def __init__(
        self, message: str, *, topic: str = "", index: int = -1, log_time: int = 0
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.index = index
        self.log_time = log_time


def format_time(ns: int) -> str:
    """Nanoseconds as ``sec.nanosec`` (the form ``ros2 bag info`` and header stamps use)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


@dataclass(frozen=True)
class BagRecord:
    """One serialised message (raw CDR). ``index`` counts messages of ``topic`` from 0 in log-time
    order. ``error`` is set when the message could not be brought into CDR (a ROS 1 message
    that does not convert); ``data`` is then the original bytes and ``deserialize`` refuses it."""

    topic: str
    msgtype: str
    index: int
    log_time: int
    data: bytes
    error: str = ""

    def where(self) -> str:
        return f"{self.topic} message #{self.index} (log time {format_time(self.log_time)} s)"


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: type, message count, and (when known) the definition, RIHS01 hash
    and offered QoS profiles to write it out unchanged."""

    topic: str
    msgtype: str
    count: int
    msgdef: str = ""
    digest: str = ""
    qos: tuple = ()


# -- types -----------------------------------------------------------------------------------


def vision_msgs_dir() -> Path | None:
    """interfaces/vision_msgs/msg of the source tree or the installed share directory, if any."""
    candidates = [PACKAGE_DIR.parent / "interfaces" / "vision_msgs" / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("vision_msgs")) / "msg")
    except Exception:  # ament index absent / vision_msgs not installed
        pass
    for c in candidates:
        if c.is_dir() and any(c.glob("*.msg")):
            return c
    return None


@lru_cache(maxsize=1)
def typestore():
    """rosbags typestore for ROS 2 Kilted plus vision_msgs (from its .msg files).

    Gives the message definitions and RIHS01 type hashes written into bags.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))
    if any(k.startswith("vision_msgs/") for k in store.fielddefs):
        return store
    d = vision_msgs_dir()
    if d is not None:
        sources = {p.stem: p.read_text() for p in sorted(d.glob("*.msg"))}
    else:
        sources = dict(_VISION_MSGS_FALLBACK)
    types: dict = {}
    for name, text in sources.items():
        types.update(get_types_from_msg(text, f"vision_msgs/msg/{name}"))
    store.register(types)
    return store


def msgtype_of(msg_or_cls: Any) -> str:
    """``pkg/msg/Name`` of an rclpy message instance or class."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    pkg = cls.__module__.split(".")[0]
    return f"{pkg}/msg/{cls.__name__}"


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name``; BagError when its package is not importable."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise BagError(f"malformed message type name {msgtype!r}")
    pkg, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(
            f"message type {msgtype} is not available in this Python environment ({exc})"
        ) from None


def serialize(msg: Any) -> bytes:
    """Raw CDR of an rclpy message (what DDS carries and rosbag2 stores)."""
    from rclpy.serialization import serialize_message

    return serialize_message(msg)


def deserialize(record: BagRecord, path: str | Path = "") -> Any:
    """The rclpy message in ``record``; BagMessageError naming file/topic/index/time if unusable."""
    from rclpy.serialization import deserialize_message

    def error(detail: str) -> BagMessageError:
        return BagMessageError(
            f"{path}: {record.where()}: {detail}",
            topic=record.topic,
            index=record.index,
            log_time=record.log_time,
        )

    if record.error:
        raise error(record.error)
    try:
        cls = message_class(record.msgtype)
    except BagError as exc:
        raise error(str(exc)) from None
    try:
        return deserialize_message(record.data, cls)
    except Exception as exc:  # rclpy raises RMWError (Fast CDR exception) on malformed CDR
        detail = str(exc).split(", at ")[0]
        raise error(
            f"corrupt {record.msgtype} payload ({len(record.data)} bytes): {detail}"
        ) from None


def qos_profile(kind: str):
    """rosbags Qos for offered_qos_profiles: 'sensor' (best effort), 'reliable', 'latched'."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    inf = QosTime(2147483647, 4294967295)
    rel = QosReliability.BEST_EFFORT if kind == "sensor" else QosReliability.RELIABLE
    dur = QosDurability.TRANSIENT_LOCAL if kind == "latched" else QosDurability.VOLATILE
    depth = 1 if kind in ("sensor", "latched") else 10
    return Qos(QosHistory.KEEP_LAST, depth, rel, dur, inf, inf, QosLiveliness.AUTOMATIC, inf, False)


# -- stamps ----------------------------------------------------------------------------------


def cdr_header_stamp(data: bytes) -> int:
    """Header stamp (ns) of a raw CDR message whose first field is std_msgs/Header
    (Image, CompressedImage, Detection2DArray, LabelInfo, ...), without deserialising it."""
    sec, nsec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nsec
