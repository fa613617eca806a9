"""Rolling statistics for the node's diagnostics, free of ROS.

:class:`CameraStats` holds one camera's counters (received, processed, dropped, bad) and
windows over the last N frames: output rate (Hz), end-to-end latency (receive -> published)
and inference time, each with mean and p99, and tracking time (mean) with the number of live
tracks after the latest frame. :class:`Throttle` rate-limits log lines per key.
All methods are thread-safe (the executor thread counts receipts, the worker the rest).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np


class Window:
    """The last ``size`` samples; mean and percentiles over them."""

    def __init__(self, size: int = 100) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(float(value))

    def __len__(self) -> int:
        return len(self._values)

    @property
    def mean(self) -> float:
        return float(np.mean(self._values)) if self._values else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else 0.0

    @property
    def p99(self) -> float:
        return self.percentile(99.0)

    @property
    def max(self) -> float:
        return max(self._values) if self._values else 0.0


class RateMeter:
    """Events per second over the last ``size`` event times (monotonic seconds)."""

    def __init__(self, size: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self._times: deque[float] = deque(maxlen=max(2, size))
        self._clock = clock

    def tick(self, t: float | None = None) -> None:
        self._times.append(self._clock() if t is None else t)

    def rate(self, now: float | None = None, stale_after: float = 5.0) -> float:
        """Hz; 0 when fewer than two events or the last one is older than ``stale_after`` s."""
        if len(self._times) < 2:
            return 0.0
        now = self._clock() if now is None else now
        if now - self._times[-1] > stale_after:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass(frozen=True)
class StatsSnapshot:
    received: int
    processed: int
    dropped: int
    bad: int
    rate_hz: float
    latency_mean_ms: float
    latency_p99_ms: float
    infer_mean_ms: float
    overhead_mean_ms: float
    last_fault: str
    tracks_live: int = 0
    track_mean_ms: float = 0.0

    def as_pairs(self) -> list[tuple[str, str]]:
        """(key, value) strings for a diagnostic_msgs KeyValue list."""
        return [
            ("rate_hz", f"{self.rate_hz:.2f}"),
            ("latency_mean_ms", f"{self.latency_mean_ms:.1f}"),
            ("latency_p99_ms", f"{self.latency_p99_ms:.1f}"),
            ("infer_mean_ms", f"{self.infer_mean_ms:.1f}"),
            ("overhead_mean_ms", f"{self.overhead_mean_ms:.1f}"),
            ("tracks_live", str(self.tracks_live)),
            ("track_mean_ms", f"{self.track_mean_ms:.2f}"),
            ("frames_received", str(self.received)),
            ("frames_processed", str(self.processed)),
            ("frames_dropped", str(self.dropped)),
            ("frames_bad", str(self.bad)),
            ("last_fault", self.last_fault),
        ]


class CameraStats:
    """Counters and windows for one camera."""

    def __init__(self, window: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad = 0
        self.last_fault = ""
        self._rate = RateMeter(window, clock)
        self._latency = Window(window)
        self._infer = Window(window)
        self._overhead = Window(window)
        self._track = Window(window)
        self.tracks_live = 0

    def on_received(self) -> None:
        with self._lock:
            self.received += 1

    def on_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def on_bad(self, fault: str) -> None:
        with self._lock:
            self.bad += 1
            self.last_fault = fault

    def on_processed(self, latency_ms: float, infer_ms: float = 0.0) -> None:
        """``latency_ms``: receive -> published; ``infer_ms``: time inside the backend."""
        with self._lock:
            self.processed += 1
            self._rate.tick()
            self._latency.add(latency_ms)
            self._infer.add(infer_ms)
            self._overhead.add(max(0.0, latency_ms - infer_ms))

    def on_tracked(self, tracks_live: int, track_ms: float) -> None:
        """After the tracker's update: tracks alive now (matched or within max_age) and the
        update's time (0 with tracking off, so the mean is per processed frame)."""
        with self._lock:
            self.tracks_live = int(tracks_live)
            self._track.add(track_ms)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                received=self.received,
                processed=self.processed,
                dropped=self.dropped,
                bad=self.bad,
                rate_hz=self._rate.rate(),
                latency_mean_ms=self._latency.mean,
                latency_p99_ms=self._latency.p99,
                infer_mean_ms=self._infer.mean,
                overhead_mean_ms=self._overhead.mean,
                last_fault=self.last_fault,
                tracks_live=self.tracks_live,
                track_mean_ms=self._track.mean,
            )


class Throttle:
    """``ready(key)`` is True at most once per ``period`` seconds per key."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = float(period)
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def ready(self, key: Hashable) -> tuple[bool, int]:
        """(may log now, how many were suppressed since the last logged one)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is None or now - last >= self.period:
                self._last[key] = now
                return True, self._suppressed.pop(key, 0)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0


#: diagnostic levels (same values as diagnostic_msgs/DiagnosticStatus)
OK, WARN, ERROR = 0, 1, 2


def camera_status(
    snap: StatsSnapshot, *, active: bool, input_topic: str, qos_incompatible: bool = False
) -> tuple[int, str]:
    """(level, message) summarising one camera for /diagnostics."""
    if not active:
        return WARN, "inactive"
    if qos_incompatible:
        return WARN, f"incompatible QoS on {input_topic}: no frames can arrive"
    if snap.received == 0:
        return OK, f"waiting for frames on {input_topic}"
    if snap.rate_hz == 0.0:
        if snap.bad and snap.processed == 0:
            return WARN, f"every frame on {input_topic} is bad: {snap.last_fault}"
        return WARN, f"no output in the last 5 s (input {input_topic})"
    return OK, f"{snap.rate_hz:.1f} Hz, latency {snap.latency_mean_ms:.0f} ms"
