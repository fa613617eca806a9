"""Latest-frame-wins slots per camera and the inference worker, free of ROS.

The subscription callback only calls :meth:`FrameSlots.put` (store the newest message,
cheap); a frame not yet taken when a newer one arrives is dropped and counted, never
queued, so latency cannot grow under load. :class:`InferenceWorker` runs in its own
thread: it takes every ready frame (oldest first, up to ``max_batch``), decodes them,
runs one batched inference call and hands each result to ``publish``. A frame that fails to
decode goes to ``on_bad`` and the others carry on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Frame:
    """One received message waiting in (or taken from) a camera's slot."""

    camera: str
    msg: Any
    t_received: float  # time.monotonic() at receipt
    seq: int  # per-camera receive counter, 1-based


class FrameSlots:
    """One slot per camera; ``put`` overwrites, ``take`` empties."""

    def __init__(self, cameras: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        if not cameras:
            raise ValueError("FrameSlots needs at least one camera")
        self._cameras = tuple(cameras)
        self._slots: dict[str, Frame | None] = {c: None for c in self._cameras}
        self._seq = {c: 0 for c in self._cameras}
        self.dropped = {c: 0 for c in self._cameras}
        self._cond = threading.Condition()
        self._closed = False
        self._clock = clock

    @property
    def cameras(self) -> tuple[str, ...]:
        return self._cameras

    def put(self, camera: str, msg: Any, t: float | None = None) -> bool:
        """Store ``msg`` as the newest frame of ``camera``. True when it displaced an untaken frame."""
        with self._cond:
            if camera not in self._slots:
                raise KeyError(f"unknown camera {camera!r}; known: {self._cameras}")
            self._seq[camera] += 1
            displaced = self._slots[camera] is not None
            if displaced:
                self.dropped[camera] += 1
            self._slots[camera] = Frame(
                camera, msg, self._clock() if t is None else t, self._seq[camera]
            )
            self._cond.notify()
            return displaced

    def take(self, max_n: int = 1, timeout: float | None = None) -> list[Frame]:
        """Up to ``max_n`` ready frames, longest-waiting first; waits up to ``timeout`` s for one.

        Returns [] on timeout or once closed.
        """
        max_n = max(1, int(max_n))
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or any(self._slots.values()), timeout):
                return []
            if self._closed:
                return []
            ready = sorted(
                (f for f in self._slots.values() if f is not None), key=lambda f: f.t_received
            )[:max_n]
            for f in ready:
                self._slots[f.camera] = None
            return ready

    def clear(self) -> int:
        """Forget waiting frames (not counted as drops); returns how many."""
        with self._cond:
            n = sum(f is not None for f in self._slots.values())
            self._slots = {c: None for c in self._cameras}
            return n

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed


class InferenceWorker:
    """Thread that drains :class:`FrameSlots` through decode -> infer -> publish.

    decode(frame) -> image          raises for a malformed frame (-> on_bad; the worker goes on)
    infer(images) -> results        one call per batch (len(images) <= max_batch)
    publish(frame, image, result, infer_ms)
    on_bad(frame, exc)              a frame that failed to decode (counted by the caller)
    on_error(exc)                   anything else that went wrong in a batch; the worker continues
    before_batch()                  called before every batch (e.g. apply pending config)
    """

    def __init__(
        self,
        slots: FrameSlots,
        *,
        decode: Callable[[Frame], Any],
        infer: Callable[[list[Any]], list[Any]],
        publish: Callable[[Frame, Any, Any, float], None],
        on_bad: Callable[[Frame, Exception], None],
        on_error: Callable[[Exception], None],
        max_batch: int = 1,
        before_batch: Callable[[], None] | None = None,
        name: str = "panoptic-worker",
    ) -> None:
        self.slots = slots
        self._decode, self._infer, self._publish = decode, infer, publish
        self._on_bad, self._on_error = on_bad, on_error
        self._before_batch = before_batch
        self.max_batch = max(1, int(max_batch))
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0  # inference calls made (for tests / diagnostics)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.slots.reopen()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop and join; True when the thread has ended. Waiting frames are discarded."""
        self._stop.set()
        self.slots.close()
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                return False
        self._thread = None
        self.slots.clear()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            frames = self.slots.take(self.max_batch, timeout=0.2)
            if frames and not self._stop.is_set():
                self.process(frames)

    def process(self, frames: list[Frame]) -> None:
        """Decode, infer and publish one batch (runs in the worker thread; public for tests)."""
        good: list[tuple[Frame, Any]] = []
        for f in frames:
            try:
                good.append((f, self._decode(f)))
            except Exception as exc:  # malformed frame or decoder bug: never kill the worker
                self._on_bad(f, exc)
        if not good:
            return
        try:
            if self._before_batch is not None:
                self._before_batch()
            t0 = time.perf_counter()
            results = self._infer([img for _, img in good])
            infer_ms = (time.perf_counter() - t0) * 1e3
            self.batches += 1
            if len(results) != len(good):
                raise RuntimeError(
                    f"inference returned {len(results)} results for {len(good)} frames"
                )
            for (f, img), res in zip(good, results):
                self._publish(f, img, res, infer_ms / len(good))
        except Exception as exc:
            self._on_error(exc)
