"""ROS 1 bags (``.bag``) read directly, every message handed out as ROS 2 CDR of its ROS 2 type.

Users keep archives of ROS 1 recordings; converting them first (``rosbags-convert``) doubles
the disk space and is one more step to get wrong. ``rosbags.rosbag1`` reads the bag and its
embedded message definitions; each ROS 1 type is matched to the ROS 2 type of the same name in
our typestore (``sensor_msgs/Image``, ``CompressedImage``, ``CameraInfo``, ``tf2_msgs``
(ROS 1 ``tf/tfMessage``), ...). Where the wire layout matches apart from the header's ``seq``
(all the camera types), rosbags converts the bytes directly (``ros1_to_cdr``); otherwise the
message is migrated field by field as ``rosbags-convert`` does (fields missing in ROS 2 dropped,
new ones defaulted). Types without a ROS 2 counterpart are registered from the bag's own
definition, so they can still be copied into a rosbag2 output with a valid definition and hash.

A topic whose type cannot be parsed or converted at all is left out of ``topics()`` and named
in ``problems``; a single message that fails to convert comes back with ``BagRecord.error``
set, so the caller skips it by name instead of losing the rest of the bag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from panoptic_ros.bags.messages import BagError, TopicInfo, qos_profile, typestore

#: ROS 1 type names that live under another name in ROS 2 (as rosbags-convert maps them)
RENAMES = {"tf/msg/tfMessage": "tf2_msgs/msg/TFMessage"}


def is_ros1_bag(path: Path) -> bool:
    """A ``.bag`` file (ROS 1 bags start with ``#ROSBAG V2.0``)."""
    if path.suffix == ".bag":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(13) == b"#ROSBAG V2.0\n"
    except OSError:
        return False


class Ros1Bag:
    """An open ROS 1 bag: ``topics()`` in ROS 2 terms, ``messages()`` as ROS 2 CDR."""

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag1 import Reader
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        self.path = path
        self.problems: list[str] = []
        try:
            self._reader = Reader(path)
            self._reader.open()
        except Exception as exc:
            raise BagError(f"{path}: cannot open ROS 1 bag: {exc}") from None
        # the bag's own ROS 1 definitions
        src_types: dict = {}
        for conn in self._reader.connections:
            try:
                src_types.update(get_types_from_msg(conn.msgdef.data, conn.msgtype))
            except Exception as exc:
                self.problems.append(
                    f"{path}: topic {conn.topic}: cannot parse the ROS 1 definition of {conn.msgtype}: {exc}"
                )
        self._src = get_typestore(Stores.EMPTY)
        self._src.register(src_types)
        # our ROS 2 store, plus the types it lacks, taken from the bag (a copy: never the cache)
        self._dst = get_typestore(Stores.EMPTY)
        self._dst.register(dict(typestore().fielddefs))
        self._convert: dict[str, Callable[[bytes], Any]] = {}
        self._topics: dict[str, TopicInfo] = {}
        self._conns: dict[str, list] = {}
        for conn in self._reader.connections:
            if conn.msgtype not in self._src.fielddefs:
                continue  # named above
            msgtype = RENAMES.get(conn.msgtype, conn.msgtype)
            try:
                if conn.msgtype not in self._convert:
                    self._convert[conn.msgtype] = self._converter(conn.msgtype, msgtype)
                msgdef, _ = self._dst.generate_msgdef(msgtype, ros_version=2)
                digest = self._dst.hash_rihs01(msgtype)
            except Exception as exc:
                self.problems.append(
                    f"{path}: topic {conn.topic}: ROS 1 type {conn.msgtype} cannot be converted to ROS 2 "
                    f"({type(exc).__name__}: {exc}); topic left out"
                )
                continue
            prev = self._topics.get(conn.topic)
            # ROS 1 topics are TCP (reliable); latched ones become transient_local
            qos = qos_profile("latched" if getattr(conn.ext, "latching", 0) else "reliable")
            self._topics[conn.topic] = TopicInfo(
                conn.topic,
                msgtype,
                conn.msgcount + (prev.count if prev else 0),
                msgdef,
                digest,
                (qos,),
            )
            self._conns.setdefault(conn.topic, []).append(conn)

    def _converter(self, src_type: str, dst_type: str) -> Callable[[bytes], Any]:
        from rosbags.convert.converter import is_same_wireformat, migrate_bytes
        from rosbags.typesys import get_types_from_msg

        if dst_type not in self._dst.fielddefs:
            text, _ = self._src.generate_msgdef(src_type, ros_version=2)
            types = get_types_from_msg(text, dst_type)
            types.pop("std_msgs/msg/Header", None)  # keep the ROS 2 header
            self._dst.register({k: v for k, v in types.items() if k not in self._dst.fielddefs})
        if is_same_wireformat(self._src, self._dst, src_type, dst_type):
            return partial(self._dst.ros1_to_cdr, typename=dst_type)
        return partial(
            migrate_bytes,
            self._src,
            self._dst,
            src_type,
            dst_type,
            {},
            src_is2=False,
            dst_is2=True,
        )

    def topics(self) -> dict[str, TopicInfo]:
        return dict(self._topics)

    def messages(self, wanted: set[str]) -> Iterator[tuple[str, str, int, bytes, str]]:
        """(topic, ROS 2 type, log time, CDR bytes, error) in log-time order; a message that does
        not convert comes with its ROS 1 bytes and the reason in ``error``."""
        conns = [c for t in wanted for c in self._conns.get(t, ())]
        if not conns:
            return
        for conn, t, raw in self._reader.messages(connections=conns):
            msgtype = self._topics[conn.topic].msgtype
            try:
                data = bytes(self._convert[conn.msgtype](raw))
            except Exception as exc:
                yield (
                    conn.topic,
                    msgtype,
                    t,
                    bytes(raw),
                    f"ROS 1 {conn.msgtype} message does not convert to ROS 2 "
                    f"({type(exc).__name__}: {exc})",
                )
                continue
            yield conn.topic, msgtype, t, data, ""

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:
            pass
