"""Forward scan of an MCAP file whose summary/footer is missing (truncated copy, killed recorder).

rosbags needs the summary section to open an MCAP file; a recorder killed mid-write leaves
none. This scanner walks the records from the start (schemas, channels, messages, chunks),
yields every complete message and stops at the first incomplete or malformed record, noting
its byte offset, so ``BagReader`` can hand back everything before the damage.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from panoptic_ros.bags.messages import BagError, TopicInfo


class McapScan:
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
