"""Write rosbag2 bags (MCAP or sqlite3), and replace an output bag without ever destroying data.

``BagWriter`` is always closed on exit (also on an exception or Ctrl-C), so what it wrote is a
valid, finalised bag (MCAP footer, sqlite commit, ``metadata.yaml``), stamped with the ROS
distro actually running (``ros_distro()``), not rosbags' placeholder.

``StagedBag`` is how a command produces an output bag: it writes into a hidden sibling
directory and moves the result into place only when the run is complete, so an interrupted or
failed run leaves an existing OUT as it was, and a run whose OUT is (or contains, or is inside)
its input is refused before anything is touched (``check_output_path``). The previous version
of the bug deleted OUT first and read IN afterwards: with IN == OUT that read a deleted file.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from panoptic_ros.bags.messages import BagError, msgtype_of, qos_profile, serialize, typestore

STORAGES = ("mcap", "sqlite3")

#: rclpy major version -> ROS 2 distribution, for wheels that do not set ROS_DISTRO
_RCLPY_DISTRO = {3: "humble", 4: "iron", 7: "jazzy", 9: "kilted"}


@lru_cache(maxsize=1)
def ros_distro() -> str:
    """The ROS 2 distribution this process runs: ``ROS_DISTRO`` (set by a sourced ROS install),
    else from the installed rclpy's version (the PyPI ROS wheels set no environment), else
    ``unknown``. Written as ``ros_distro`` into bag metadata, as ``ros2 bag record`` does."""
    env = os.environ.get("ROS_DISTRO", "").strip()
    if env:
        return env
    from importlib import metadata

    for dist in ("ros-rclpy", "rclpy"):
        try:
            major = int(metadata.version(dist).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
        return _RCLPY_DISTRO.get(major, f"rclpy{major}")
    return "unknown"


_BAG_FILE_SUFFIXES = (".mcap", ".db3", ".db3-journal", ".db3-wal", ".db3-shm", ".yaml.tmp")


def looks_like_bag(path: Path) -> bool:
    """A directory holding nothing but rosbag2 files (or nothing at all)."""
    if not path.is_dir():
        return False
    names = [q.name for q in path.iterdir()]
    return all(n == "metadata.yaml" or n.endswith(_BAG_FILE_SUFFIXES) for n in names)


def remove_bag(path: str | Path) -> None:
    """Delete an existing output bag, refusing anything that does not look like one."""
    p = Path(path)
    if not p.exists():
        return
    if looks_like_bag(p):
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
        if msgdef and not digest:  # Humble-era bags store no type hash: compute it
            digest = _rihs01_of(msgtype, msgdef)
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

    def close(self) -> None:
        """Finalise the bag (idempotent). Never leaves a half-written file behind silently."""
        if not self._open:
            return
        self._open = False
        _stamp_distro(self._writer)
        try:
            self._writer.close()
        except Exception as exc:
            raise BagError(f"{self.path}: could not finalise the bag: {exc}") from exc
        meta = self.path / "metadata.yaml"
        if meta.is_file():
            text = meta.read_text()
            meta.write_text(text.replace("ros_distro: rosbags", f"ros_distro: {ros_distro()}"))


def _rihs01_of(msgtype: str, msgdef: str) -> str | None:
    """The RIHS01 hash of a ROS 2 ``.msg`` definition (with its ``MSG:`` dependencies), or None
    when it does not parse (then the typestore is asked instead)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    try:
        store = get_typestore(Stores.EMPTY)
        store.register(dict(typestore().fielddefs))
        types = get_types_from_msg(msgdef, msgtype)
        store.register({k: v for k, v in types.items() if k not in store.fielddefs})
        return store.hash_rihs01(msgtype)
    except Exception:
        return None


def _stamp_distro(writer: Any) -> None:
    """rosbags writes ``ros_distro: rosbags`` into the metadata it stores inside the bag (MCAP
    metadata record, sqlite ``metadata`` and ``schema`` tables) and into metadata.yaml; put the
    running distro there instead. Hooks the storage's close, which receives that text."""
    storage = getattr(writer, "storage", None)
    if storage is None or not hasattr(storage, "close"):
        return
    close = storage.close
    distro = ros_distro()

    def close_with_distro(version: int, metadata: str) -> None:
        cursor = getattr(storage, "cursor", None)
        if cursor is not None:  # sqlite3
            cursor.execute("UPDATE schema SET ros_distro = ?", (distro,))
        close(version, metadata.replace("ros_distro: rosbags", f"ros_distro: {distro}"))

    storage.close = close_with_distro


# -- never destroying data ------------------------------------------------------------------


def check_output_path(inputs: Sequence[str | Path], output: str | Path, *, overwrite: bool) -> None:
    """Refuse an OUT that is an input, lies inside one or contains one (whatever ``overwrite``
    says), or exists without ``overwrite``, or exists and is not a bag. Paths are compared
    after resolving symlinks."""
    out = Path(output).resolve()
    for i in inputs:
        inp = Path(i).resolve()
        if out == inp:
            raise BagError(f"{output}: the output is the input bag; choose another OUT")
        if out.is_relative_to(inp):
            raise BagError(
                f"{output}: the output lies inside the input bag {i}; choose another OUT"
            )
        if inp.is_relative_to(out):
            raise BagError(
                f"{output}: the output would contain the input bag {i} (replacing OUT would delete it); "
                "choose another OUT"
            )
    p = Path(output)
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise BagError(f"{output}: exists already (pass --overwrite to replace it)")
        if not looks_like_bag(p) or p.is_symlink():
            raise BagError(
                f"{output}: exists and does not look like a rosbag2 directory; not overwriting it"
            )


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while a bag is finalised or moved into place, so an impatient
    second Ctrl-C cannot leave a half-closed file or a missing OUT; a signal that arrived
    meanwhile is raised again on exit. (Python-level handlers are swapped, not the thread's
    signal mask: with ONNX Runtime / tqdm threads running, any thread may take the signal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    # a handler installed from C (rclpy's) reads as None and could not be put back: leave it
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]
    previous = {s: signal.signal(s, lambda signum, _frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if pending:
            signal.raise_signal(pending[0])


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class StagedBag:
    """An output bag built in a hidden sibling directory and moved to ``target`` only by
    ``commit()``; ``abandon()`` keeps the finished part as ``<target>.partial`` (or drops it).

    ``path`` is where to write: ``<parent>/.<name>.staging-<pid>/<name>``, so the storage file
    already carries its final name (``<name>.mcap``) and the move is a rename on the same
    filesystem. A staging directory left by a killed run (SIGKILL, power loss) is removed by the
    next run for the same OUT once its process is gone.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        parent = self.target.parent
        if not parent.is_dir():
            raise BagError(f"{target}: parent directory {parent} does not exist")
        self.staging = parent / f".{self.target.name}.staging-{os.getpid()}"
        for stale in parent.glob(f".{self.target.name}.staging-*"):  # left by a killed run
            if stale == self.staging or not _pid_alive(stale.name.rsplit("-", 1)[-1]):
                shutil.rmtree(stale, ignore_errors=True)
        self.staging.mkdir()
        self.path = self.staging / self.target.name

    def commit(self) -> Path:
        """Put the finished bag at ``target`` (replacing a previous bag there). SIGINT/SIGTERM
        are held back during the two renames, so OUT is always either the old bag or the new."""
        old = self.staging / (self.target.name + ".previous")
        with signals_held():
            if self.target.exists():
                os.rename(self.target, old)
            try:
                os.rename(self.path, self.target)
            except OSError:
                if old.exists():
                    os.rename(old, self.target)
                raise
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.target

    def abandon(self, keep_partial: bool = True) -> Path | None:
        """Leave ``target`` alone; keep what was written as ``<target>.partial`` (replacing an
        older partial bag) when asked and possible. Returns where the partial bag is, if kept."""
        kept: Path | None = None
        partial = self.target.with_name(self.target.name + ".partial")
        if (
            keep_partial
            and self.path.exists()
            and (not partial.exists() or looks_like_bag(partial))
        ):
            try:
                remove_bag(partial)
                os.rename(self.path, partial)
                kept = partial
            except (OSError, BagError):
                kept = None
        shutil.rmtree(self.staging, ignore_errors=True)
        return kept
