"""rosbag2 read/write helpers (sqlite3 and MCAP) built on the pure-Python ``rosbags`` library.

Part of the ROS shell: messages are the same rclpy message classes the node publishes,
(de)serialised with ``rclpy.serialization`` (raw CDR, what DDS and ``ros2 bag`` carry), so a
bag written offline holds byte-identical messages to a live recording. ``rosbags`` supplies
the containers, message definitions and type hashes (its typestore, plus vision_msgs
registered from ``interfaces/vision_msgs/msg/*.msg``), so the bags play with ``ros2 bag play``
and open in Foxglove.

Reading (``BagReader``)
    A bag is a rosbag2 directory (``metadata.yaml`` + storage files), a directory whose
    ``metadata.yaml`` is missing (interrupted recording: its single ``.mcap`` / ``.db3`` is
    read), or a bare ``.mcap`` / ``.db3`` file. An MCAP file without a summary/footer
    (truncated copy, killed recorder) is read by a forward scan that stops at the first
    incomplete record. Every read problem becomes a ``BagError`` naming the file and, for
    messages, the topic, per-topic message index and log time; ``messages()`` yields all
    that can be read and records a mid-file failure in ``reader.problems`` instead of
    losing the messages before it.

Writing (``BagWriter``)
    Always closed on exit (also on an exception or Ctrl-C), so an interrupted run leaves a
    valid, finalised bag (MCAP footer, sqlite commit, ``metadata.yaml``) of what was written.

Synthetic camera bags (``write_synthetic_bag``) for the demo and the tests: procedural
street scenes (``synthetic.py``) in any of rgb8 / bgr8 / rgba8 / mono8 / jpeg / png, with the
ground truth handed back, not stored.
"""

from __future__ import annotations

import importlib
import mmap
import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGES = ("mcap", "sqlite3")
#: Image encodings / compressed formats write_synthetic_bag can produce
SYNTHETIC_ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8", "jpeg", "png")

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
    """One serialised message. ``index`` counts messages of ``topic`` from 0 in log-time order."""

    topic: str
    msgtype: str
    index: int
    log_time: int
    data: bytes

    def where(self) -> str:
        return f"{self.topic} message #{self.index} (log time {format_time(self.log_time)} s)"


@dataclass(frozen=True)
class TopicInfo:
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

    try:
        cls = message_class(record.msgtype)
    except BagError as exc:
        raise BagMessageError(
            f"{path}: {record.where()}: {exc}",
            topic=record.topic,
            index=record.index,
            log_time=record.log_time,
        ) from None
    try:
        return deserialize_message(record.data, cls)
    except Exception as exc:  # rclpy raises RMWError (Fast CDR exception) on malformed CDR
        detail = str(exc).split(", at ")[0]
        raise BagMessageError(
            f"{path}: {record.where()}: corrupt {record.msgtype} payload ({len(record.data)} bytes): {detail}",
            topic=record.topic,
            index=record.index,
            log_time=record.log_time,
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


# -- reading ---------------------------------------------------------------------------------


def _resolve_bag_path(path: Path) -> Path:
    """What rosbags should open: the directory, or the single storage file of a directory
    without metadata.yaml, or the file itself."""
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return path
        files = sorted([*path.glob("*.mcap"), *path.glob("*.db3")])
        if len(files) == 1:
            return files[0]
        if not files:
            raise BagError(f"{path}: not a rosbag2 bag (no metadata.yaml, no .mcap or .db3 file)")
        raise BagError(
            f"{path}: no metadata.yaml and several storage files ({', '.join(f.name for f in files)}); "
            "open one of them directly"
        )
    if path.suffix not in (".mcap", ".db3"):
        raise BagError(f"{path}: not a rosbag2 bag (expected a directory, .mcap or .db3 file)")
    return path


class BagReader:
    """Read a rosbag2 bag; see the module docstring. Use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.problems: list[str] = []
        self._reader = None
        self._scan: _McapScan | None = None
        self._topics: dict[str, TopicInfo] = {}

    # -- open / close
    def open(self) -> BagReader:
        from rosbags.rosbag2 import Reader

        target = _resolve_bag_path(self.path)
        if target != self.path:
            self.problems.append(
                f"{self.path}: no metadata.yaml (interrupted recording?); reading {target.name} directly"
            )
        try:
            reader = Reader(target)
            reader.open()
        except Exception as exc:
            mcap = target if target.suffix == ".mcap" else _storage_file(target, ".mcap")
            if mcap is None:
                raise BagError(f"{target}: cannot open bag: {exc}") from None
            # truncated / unfinished MCAP: forward scan of the complete records
            self.problems.append(
                f"{mcap}: no valid MCAP summary ({exc}); recovering by scanning the records"
            )
            self._scan = _McapScan(mcap)
            self._topics = self._scan.topics()
            return self
        self._reader = reader
        try:
            for topic, info in reader.topics.items():
                conns = info.connections
                c = conns[0]
                qos = tuple(getattr(c.ext, "offered_qos_profiles", ()) or ())
                self._topics[topic] = TopicInfo(
                    topic,
                    info.msgtype or c.msgtype,
                    info.msgcount,
                    c.msgdef.data if c.msgdef else "",
                    c.digest or "",
                    qos,
                )
        except Exception as exc:
            self.close()
            raise BagError(f"{target}: cannot read topics: {exc}") from None
        return self

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:
                pass
            self._reader = None
        self._scan = None

    def __enter__(self) -> BagReader:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries
    @property
    def topics(self) -> dict[str, TopicInfo]:
        return dict(self._topics)

    @property
    def recovered(self) -> bool:
        """True when the bag is read by a forward scan (truncated MCAP)."""
        return self._scan is not None

    def image_topics(self, requested: Sequence[str] | None = None) -> list[str]:
        """Image/CompressedImage topics (all, or the requested ones after checking them)."""
        images = [t for t, i in sorted(self._topics.items()) if i.msgtype in IMAGE_TYPES]
        if not requested:
            if not images:
                listing = (
                    ", ".join(f"{t} [{i.msgtype}]" for t, i in sorted(self._topics.items()))
                    or "none"
                )
                raise BagError(
                    f"{self.path}: no sensor_msgs/Image or CompressedImage topic (topics: {listing})"
                )
            return images
        out = []
        for t in requested:
            info = self._topics.get(t)
            if info is None:
                raise BagError(
                    f"{self.path}: no topic {t!r} (image topics: {', '.join(images) or 'none'})"
                )
            if info.msgtype not in IMAGE_TYPES:
                raise BagError(
                    f"{self.path}: topic {t} is {info.msgtype}, not an Image or CompressedImage"
                )
            out.append(t)
        return out

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagRecord]:
        """Records of ``topics`` (all if None) in log-time order.

        A failure in the middle of the file ends the iteration; it is described in
        ``self.problems`` (file, last good message, error) rather than raised, so the
        caller keeps everything read so far.
        """
        wanted = set(topics) if topics is not None else set(self._topics)
        counts: dict[str, int] = {}
        last = "before the first message"
        if self._scan is not None:
            source = self._scan.messages(wanted)
        else:
            assert self._reader is not None, "BagReader is not open"
            conns = [c for c in self._reader.connections if c.topic in wanted]
            if not conns:
                return
            source = (
                (c.topic, c.msgtype, t, bytes(d))
                for c, t, d in self._reader.messages(connections=conns)
            )
        try:
            for topic, msgtype, t, data in source:
                i = counts.get(topic, 0)
                counts[topic] = i + 1
                rec = BagRecord(topic, msgtype, i, t, data)
                last = f"after {rec.where()}"
                yield rec
        except Exception as exc:  # truncated / corrupt storage: keep what was read
            self.problems.append(f"{self.path}: storage unreadable {last}: {exc}")
        if self._scan is not None and self._scan.stopped:
            self.problems.append(f"{self._scan.path}: {self._scan.stopped} ({last})")


def _storage_file(dirpath: Path, suffix: str) -> Path | None:
    if dirpath.is_dir():
        files = sorted(dirpath.glob(f"*{suffix}"))
        return files[0] if len(files) == 1 else None
    return None


class _McapScan:
    """Forward scan of an MCAP file's records (schemas, channels, messages, chunks), for files
    whose summary/footer is missing. Stops at the first incomplete or malformed record and
    notes its byte offset in ``stopped``."""

    MAGIC = b"\x89MCAP0\r\n"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stopped = ""
        self._channels: dict[int, tuple[str, str]] = {}  # id -> (topic, msgtype)
        self._schemas: dict[int, tuple[str, str]] = {}  # id -> (name, data)
        self._counts: dict[int, int] = {}
        with open(path, "rb") as f:
            head = f.read(8)
        if head != self.MAGIC:
            raise BagError(f"{path}: not an MCAP file (bad magic {head!r})")
        for _ in self._records(count_only=True):
            pass

    def topics(self) -> dict[str, TopicInfo]:
        out: dict[str, TopicInfo] = {}
        for cid, (topic, msgtype) in self._channels.items():
            defn = next((d for n, d in self._schemas.values() if n == msgtype), "")
            prev = out.get(topic)
            out[topic] = TopicInfo(
                topic, msgtype, self._counts.get(cid, 0) + (prev.count if prev else 0), defn
            )
        return out

    def messages(self, wanted: set[str]) -> Iterator[tuple[str, str, int, bytes]]:
        # in file order (recorders write in arrival order)
        for m in self._records(count_only=False):
            if m[0] in wanted:
                yield m

    def _records(self, count_only: bool) -> Iterator[tuple[str, str, int, bytes]]:
        from rosbags.rosbag2.storage_mcap import decompress

        self.stopped = ""
        self._counts.clear()
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        u64 = struct.Struct("<Q").unpack_from

        def walk(
            buf: bytes, pos: int, end: int, base: int
        ) -> Iterator[tuple[str, str, int, bytes]]:
            while pos < end:
                if pos + 9 > end:
                    raise _Stop(f"incomplete record header at byte offset {base + pos}")
                op = buf[pos]
                (size,) = u64(buf, pos + 1)
                body_start = pos + 9
                if body_start + size > end:
                    raise _Stop(
                        f"truncated record (op 0x{op:02x}, {size} bytes) at byte offset {base + pos}"
                    )
                body = buf[body_start : body_start + size]
                pos = body_start + size
                if op == 0x03:  # schema
                    (sid,) = struct.unpack_from("<H", body, 0)
                    name, o = _mcap_str(body, 2)
                    _enc, o = _mcap_str(body, o)
                    (n,) = struct.unpack_from("<I", body, o)
                    self._schemas[sid] = (name, body[o + 4 : o + 4 + n].decode())
                elif op == 0x04:  # channel
                    cid, sid = struct.unpack_from("<HH", body, 0)
                    topic, o = _mcap_str(body, 4)
                    self._channels[cid] = (topic, self._schemas.get(sid, ("", ""))[0])
                elif op == 0x05:  # message
                    cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", body, 0)
                    self._counts[cid] = self._counts.get(cid, 0) + 1
                    if not count_only and cid in self._channels:
                        topic, msgtype = self._channels[cid]
                        yield topic, msgtype, log_time, body[22:]
                elif op == 0x06:  # chunk
                    _st, _et, usize, crc = struct.unpack_from("<QQQI", body, 0)
                    comp, o = _mcap_str(body, 28)
                    (csize,) = u64(body, o)
                    try:
                        raw = decompress(body[o + 8 : o + 8 + csize], comp, usize, crc)
                    except Exception as exc:
                        raise _Stop(
                            f"unreadable chunk at byte offset {base + pos - size - 9}: {exc}"
                        ) from None
                    yield from walk(raw, 0, len(raw), base + pos - size - 9)
                elif op in (
                    0x02,
                    0x0E,
                    0x0A,
                ):  # footer / summary offset / data end: summary follows
                    if op in (0x02, 0x0A):
                        return
                # other records (indexes, metadata, attachments) are skipped

        try:
            yield from walk(data, 8, len(data), 0)
        except _Stop as stop:
            self.stopped = str(stop)
        except Exception as exc:  # malformed record contents
            self.stopped = f"malformed record: {exc}"


class _Stop(Exception):
    pass


def _mcap_str(buf: bytes, o: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, o)
    return buf[o + 4 : o + 4 + n].decode(), o + 4 + n


# -- writing ---------------------------------------------------------------------------------


def remove_bag(path: str | Path) -> None:
    """Delete an existing output bag, refusing anything that does not look like one."""
    p = Path(path)
    if not p.exists():
        return
    if p.is_dir():
        names = {q.name for q in p.iterdir()}
        if not names or all(
            n == "metadata.yaml"
            or n.endswith((".mcap", ".db3", ".db3-journal", ".db3-wal", ".db3-shm", ".yaml.tmp"))
            for n in names
        ):
            shutil.rmtree(p)
            return
    raise BagError(f"{p}: exists and does not look like a rosbag2 directory; not overwriting it")


class BagWriter:
    """rosbag2 writer (MCAP or sqlite3). Closed (finalised) on exit whatever happens.

    ``add_topic`` before writing; ``write`` raw CDR or ``write_msg`` an rclpy message.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", *, overwrite: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError(f"{self.path}: exists already (pass --overwrite to replace it)")
            remove_bag(self.path)
        self.storage = storage
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def open(self) -> BagWriter:
        try:
            self._writer.open()
        except Exception as exc:
            raise BagError(f"{self.path}: cannot create bag: {exc}") from None
        self._open = True
        return self

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_topic(self, topic: str) -> bool:
        return topic in self._conns

    def add_topic(
        self,
        topic: str,
        msgtype: str,
        *,
        qos: str | Sequence | None = None,
        msgdef: str | None = None,
        digest: str | None = None,
    ) -> None:
        """Register ``topic``. The definition and hash come from the typestore unless the
        caller passes the ones read from another bag (``msgdef`` + ``digest``)."""
        if topic in self._conns:
            return
        profiles = qos_profile(qos) if isinstance(qos, str) else None
        offered = [profiles] if profiles is not None else list(qos or [])
        kwargs: dict[str, Any] = {"offered_qos_profiles": offered}
        if msgdef and digest:
            kwargs.update(msgdef=msgdef, rihs01=digest)
        else:
            store = typestore()
            if msgtype not in store.fielddefs:
                raise BagError(
                    f"{self.path}: cannot write {topic}: message type {msgtype} unknown to the typestore"
                )
            kwargs["typestore"] = store
        self._conns[topic] = self._writer.add_connection(topic, msgtype, **kwargs)
        self.counts[topic] = 0

    def write(self, topic: str, log_time: int, data: bytes | memoryview) -> None:
        self._writer.write(self._conns[topic], int(log_time), data)
        self.counts[topic] += 1

    def write_msg(self, topic: str, msg: Any, log_time: int, *, qos: str | None = None) -> None:
        if topic not in self._conns:
            self.add_topic(topic, msgtype_of(msg), qos=qos)
        self.write(topic, log_time, serialize(msg))

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        """Finalise the bag (idempotent). Never leaves a half-written file behind silently."""
        if not self._open:
            return
        self._open = False
        try:
            self._writer.close()
        except Exception as exc:
            raise BagError(f"{self.path}: could not finalise the bag: {exc}") from exc


# -- synthetic camera bags ---------------------------------------------------------------------


def stamp_of(ns: int):
    """builtin_interfaces/Time from nanoseconds."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def image_message(
    rgb: np.ndarray,
    stamp: int,
    frame_id: str = "camera",
    encoding: str = "rgb8",
    *,
    step_padding: int = 0,
    jpeg_quality: int = 90,
):
    """An rclpy Image (rgb8/bgr8/rgba8/mono8, optional row padding) or CompressedImage
    (jpeg/png) holding the RGB array ``rgb`` with header stamp ``stamp`` (ns)."""
    import cv2
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    header = Header(stamp=stamp_of(stamp), frame_id=frame_id)
    if encoding in ("jpeg", "png"):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
            if encoding == "jpeg"
            else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        ok, buf = cv2.imencode("." + ("jpg" if encoding == "jpeg" else "png"), bgr, params)
        if not ok:
            raise BagError(f"cv2 could not encode {encoding}")
        return CompressedImage(
            header=header, format=f"rgb8; {encoding} compressed bgr8", data=buf.tobytes()
        )
    if encoding == "rgb8":
        arr = rgb
    elif encoding == "bgr8":
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "mono8":
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        raise BagError(
            f"write_synthetic_bag cannot produce encoding {encoding!r}; choose from {SYNTHETIC_ENCODINGS}"
        )
    h, w = arr.shape[:2]
    rows = np.ascontiguousarray(arr).reshape(h, -1)
    if step_padding:
        rows = np.pad(rows, ((0, 0), (0, step_padding)))
    return Image(
        header=header,
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=rows.shape[1],
        data=rows.tobytes(),
    )


@dataclass
class SyntheticFrame:
    """Ground truth for one frame of a synthetic bag (kept aside, not in the bag)."""

    stamp: int
    seed: int
    panoptic: np.ndarray | None = None
    image: np.ndarray | None = None


@dataclass
class SyntheticBag:
    path: Path
    topic: str
    frames: list[SyntheticFrame] = field(default_factory=list)


def write_synthetic_bag(
    path: str | Path,
    *,
    frames: int = 30,
    height: int = 480,
    width: int = 640,
    topic: str = "/camera/image_raw",
    encoding: str = "rgb8",
    storage: str = "mcap",
    fps: float = 10.0,
    start: int = 1_700_000_000_000_000_000,
    seed_start: int = 0,
    frame_id: str = "camera",
    latency_ns: int = 2_000_000,
    step_padding: int = 0,
    keep_images: bool = False,
    keep_panoptic: bool = True,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyntheticBag:
    """Write a camera bag of procedural scenes (validation seeds, so never training data).

    Header stamps are ``start + i / fps``; log (receive) times trail them by ``latency_ns``
    like a real recording. Returns the ground truth per frame (panoptic maps, optionally the
    RGB images).
    """
    from panoptic_ros.training.synthetic import generate_scene, validation_seeds

    out = SyntheticBag(Path(path), topic)
    period = int(round(1e9 / fps))
    with BagWriter(path, storage, overwrite=overwrite) as writer:
        for i, seed in enumerate(validation_seeds(frames, start=seed_start)):
            scene = generate_scene(seed, height, width)
            t = start + i * period
            msg = image_message(scene.image, t, frame_id, encoding, step_padding=step_padding)
            writer.write_msg(topic, msg, t + latency_ns, qos="sensor")
            out.frames.append(
                SyntheticFrame(
                    t,
                    seed,
                    scene.panoptic if keep_panoptic else None,
                    scene.image if keep_images else None,
                )
            )
            if progress:
                progress(i + 1)
    return out


def output_namespace(image_topic: str) -> str:
    """The namespace the node's outputs live in for an input topic: its parent, after
    dropping an image_transport suffix (``/cam/image_raw/compressed`` -> ``/cam``)."""
    t = image_topic.rstrip("/")
    if t.endswith("/compressed"):
        t = t[: -len("/compressed")]
    parent = t.rsplit("/", 1)[0]
    return parent if parent else ""


def progress_bar(total: int | None, desc: str, unit: str = "frame", disable: bool | None = None):
    """tqdm on stderr (disabled when stderr is not a terminal unless PANOPTIC_PROGRESS=1)."""
    from tqdm import tqdm

    if disable is None:
        disable = not (sys.stderr.isatty() or os.environ.get("PANOPTIC_PROGRESS") == "1")
    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, dynamic_ncols=True
    )


# -- recording live topics ---------------------------------------------------------------------


def cdr_header_stamp(data: bytes) -> int:
    """Header stamp (ns) of a raw CDR message whose first field is std_msgs/Header
    (Image, CompressedImage, Detection2DArray, LabelInfo, ...), without deserialising it."""
    sec, nsec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nsec


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
