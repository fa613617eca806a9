"""Read a bag: rosbag2 (sqlite3 / MCAP), a truncated MCAP, or a ROS 1 ``.bag``, as CDR records.

A bag is a rosbag2 directory (``metadata.yaml`` + storage files), a directory whose
``metadata.yaml`` is missing (interrupted recording: its single ``.mcap`` / ``.db3`` is read),
a bare ``.mcap`` / ``.db3`` file, or a ROS 1 ``.bag`` file (``ros1.py``: messages converted to
their ROS 2 types). An MCAP file without a summary/footer (truncated copy, killed recorder) is
read by a forward scan (``mcap_recovery.py``) that stops at the first incomplete record. Every
read problem becomes a ``BagError`` naming the file and, for messages, the topic, per-topic
message index and log time; ``messages()`` yields all that can be read and records a mid-file
failure in ``reader.problems`` instead of losing the messages before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from panoptic_ros.bags.mcap_recovery import McapScan
from panoptic_ros.bags.messages import (
    COMPRESSED_TYPE,
    IMAGE_TYPES,
    BagError,
    BagMessageError,
    BagRecord,
    TopicInfo,
    deserialize,
)
from panoptic_ros.bags.ros1 import Ros1Bag, is_ros1_bag

#: what a bag path may be, for messages
BAG_KINDS = "a rosbag2 directory, .mcap or .db3 file, or a ROS 1 .bag file"


def resolve_bag_path(path: Path) -> Path:
    """What to open: the directory, or the single storage file of a directory without
    metadata.yaml, or the file itself."""
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or directory)")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return path
        files = sorted([*path.glob("*.mcap"), *path.glob("*.db3"), *path.glob("*.bag")])
        if len(files) == 1:
            return files[0]
        if not files:
            raise BagError(f"{path}: not a bag (no metadata.yaml, no .mcap, .db3 or .bag file)")
        raise BagError(
            f"{path}: no metadata.yaml and several storage files ({', '.join(f.name for f in files)}); "
            "open one of them directly"
        )
    if path.suffix not in (".mcap", ".db3") and not is_ros1_bag(path):
        raise BagError(f"{path}: not a bag (expected {BAG_KINDS})")
    return path


def _storage_file(dirpath: Path, suffix: str) -> Path | None:
    if dirpath.is_dir():
        files = sorted(dirpath.glob(f"*{suffix}"))
        return files[0] if len(files) == 1 else None
    return None


class BagReader:
    """Read a bag; see the module docstring. Use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.problems: list[str] = []
        self._reader = None
        self._scan: McapScan | None = None
        self._ros1: Ros1Bag | None = None
        self._topics: dict[str, TopicInfo] = {}

    # -- open / close
    def open(self) -> BagReader:
        from rosbags.rosbag2 import Reader

        target = resolve_bag_path(self.path)
        if target != self.path and target.suffix != ".bag":
            self.problems.append(
                f"{self.path}: no metadata.yaml (interrupted recording?); reading {target.name} directly"
            )
        if target.is_file() and is_ros1_bag(target):
            self._ros1 = Ros1Bag(target)
            self._topics = self._ros1.topics()
            self.problems.extend(self._ros1.problems)
            return self
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
            self._scan = McapScan(mcap)
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
        if self._ros1 is not None:
            self._ros1.close()
            self._ros1 = None
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

    @property
    def is_ros1(self) -> bool:
        return self._ros1 is not None

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

    def camera_topics(
        self, requested: Sequence[str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """(topics to segment, {image topic: why it is not a camera image}).

        Requested topics are taken as they are (``--topics`` forces a depth topic). Otherwise
        every image topic whose first readable message is a camera image (``camera_encoding``)
        is chosen; depth and other non-camera images are returned as skipped with their
        encoding, and so is ``X/compressed`` when ``X`` is in the bag too (image_transport's
        copy of the same frames: segmenting both doubles the work and the outputs).
        BagError when nothing is left to segment.
        """
        if requested:
            return self.image_topics(requested), {}
        chosen: list[str] = []
        skipped: dict[str, str] = {}
        images = self.image_topics()
        for t in images:
            reason = self._non_camera_reason(t)
            if not reason and t.endswith("/compressed") and t[: -len("/compressed")] in images:
                reason = f"compressed copy of {t[: -len('/compressed')]}"
            if reason:
                skipped[t] = reason
            else:
                chosen.append(t)
        for t in [c for c in chosen if c.endswith("/compressed")]:
            raw = t[: -len("/compressed")]
            if raw in skipped:  # the raw twin is not a camera image: neither is this one
                chosen.remove(t)
                skipped[t] = f"compressed copy of {raw}"
        if not chosen:
            listing = ", ".join(f"{t} ({r})" for t, r in skipped.items())
            raise BagError(
                f"{self.path}: no camera image topic to segment: {listing} "
                "(name them with --topics to process them anyway)"
            )
        return chosen, skipped

    def _non_camera_reason(self, topic: str) -> str:
        """'' for a camera topic (or one whose first message is unreadable: the frame loop
        reports that by name), else e.g. ``encoding 16UC1``."""
        from panoptic_ros.bags.topics import camera_encoding

        for rec in self.messages([topic]):
            try:
                msg = deserialize(rec, self.path)
            except BagMessageError:
                continue
            if rec.msgtype == COMPRESSED_TYPE:
                fmt = str(msg.format)
                ok = camera_encoding(fmt, compressed=True)
                return "" if ok else f"not a camera image (format {fmt!r})"
            enc = str(msg.encoding)
            return "" if camera_encoding(enc) else f"not a camera image (encoding {enc})"
        return ""

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
            source = ((*m, "") for m in self._scan.messages(wanted))
        elif self._ros1 is not None:
            source = self._ros1.messages(wanted)
        else:
            assert self._reader is not None, "BagReader is not open"
            conns = [c for c in self._reader.connections if c.topic in wanted]
            if not conns:
                return
            source = (
                (c.topic, c.msgtype, t, bytes(d), "")
                for c, t, d in self._reader.messages(connections=conns)
            )
        try:
            for topic, msgtype, t, data, error in source:
                i = counts.get(topic, 0)
                counts[topic] = i + 1
                rec = BagRecord(topic, msgtype, i, t, data, error)
                last = f"after {rec.where()}"
                yield rec
        except Exception as exc:  # truncated / corrupt storage: keep what was read
            self.problems.append(f"{self.path}: storage unreadable {last}: {exc}")
        if self._scan is not None and self._scan.stopped:
            self.problems.append(f"{self._scan.path}: {self._scan.stopped} ({last})")
