"""ROS-free timing helpers: statistics over samples, per-stage timers, windows, tables.

Used by ``panoptic-ros bench`` (single-frame stage timing, backend comparison, input-size
scaling), by ``loadgen`` (latency over time windows under overload) and by
``scripts/gpu_check`` (which runs on machines without ROS). Nothing here imports rclpy,
torch or onnxruntime.

Conventions: every duration is in milliseconds; percentiles use linear interpolation
between order statistics (numpy's default), so ``p99`` of 200 samples lies between the
2nd and 3rd largest sample.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Stats",
    "summarize",
    "percentile",
    "overhead_ratio",
    "StageTimer",
    "time_call",
    "windowed",
    "growth_pct",
    "format_table",
    "format_kv",
    "parse_size",
    "parse_sizes",
]


@dataclass(frozen=True)
class Stats:
    """Summary of one series of samples (milliseconds unless stated otherwise)."""

    n: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def rate_hz(self) -> float:
        """Frames per second if every sample is one frame's duration in ms."""
        return 1000.0 / self.mean if self.mean > 0 else math.inf

    def as_dict(self) -> dict[str, float]:
        return {
            k: getattr(self, k) for k in ("n", "mean", "std", "min", "p50", "p90", "p99", "max")
        }


_NAN_STATS = Stats(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN for no samples."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    a = np.asarray(samples, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan
    return float(np.percentile(a, q))


def summarize(samples: Iterable[float] | np.ndarray) -> Stats:
    """Mean, std, min, p50, p90, p99, max of the finite samples (NaN fields when empty)."""
    a = np.asarray(
        list(samples) if not isinstance(samples, np.ndarray) else samples, dtype=np.float64
    ).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return _NAN_STATS
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Stats(
        n=int(a.size),
        mean=float(a.mean()),
        std=float(a.std()),
        min=float(a.min()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        max=float(a.max()),
    )


def overhead_ratio(e2e_ms: float, infer_ms: float) -> float:
    """Share of end-to-end time that is not inference: ``(e2e - infer) / e2e``.

    Both numbers must come from the same run (means over the same frames). Returns NaN
    when ``e2e_ms`` is not positive; clamps tiny negative values from timer noise to 0.
    """
    if not (e2e_ms > 0) or not math.isfinite(infer_ms):
        return math.nan
    return max(0.0, (e2e_ms - infer_ms) / e2e_ms)


def growth_pct(start: float, end: float) -> float:
    """Relative growth in percent from ``start`` to ``end`` (NaN when start is not positive)."""
    if not (start > 0):
        return math.nan
    return 100.0 * (end - start) / start


class StageTimer:
    """Collects per-stage durations over many frames.

    >>> t = StageTimer()
    >>> with t.stage("preprocess"):
    ...     pass
    >>> t.add("infer", 3.0)      # a duration measured elsewhere (ms)
    >>> sorted(t.stats())
    ['infer', 'preprocess']

    Stage order is the order of first appearance, so tables follow the pipeline.
    ``warmup`` samples per stage are discarded by ``stats()``/``samples()``.
    """

    def __init__(self, warmup: int = 0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup = int(warmup)
        self._clock = clock
        self._samples: OrderedDict[str, list[float]] = OrderedDict()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = self._clock()
        try:
            yield
        finally:
            self.add(name, (self._clock() - t0) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self._samples.setdefault(name, []).append(float(ms))

    def samples(self, name: str) -> list[float]:
        return self._samples.get(name, [])[self.warmup :]

    @property
    def names(self) -> list[str]:
        return list(self._samples)

    def stats(self) -> OrderedDict[str, Stats]:
        return OrderedDict((n, summarize(self.samples(n))) for n in self._samples)


def time_call(fn: Callable[[], object], *, frames: int, warmup: int = 0) -> Stats:
    """Call ``fn`` ``warmup + frames`` times; statistics of the last ``frames`` durations (ms)."""
    for _ in range(max(0, int(warmup))):
        fn()
    out = []
    for _ in range(int(frames)):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return summarize(out)


def windowed(
    times_s: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    window_s: float,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> list[tuple[float, Stats]]:
    """Split a time series into consecutive windows of ``window_s`` seconds.

    Returns ``[(window_start_s, Stats of the values in [start, start + window)), ...]``,
    one entry per window from ``start_s`` (default: first time) until ``end_s`` (default:
    last time), empty windows included (``Stats.n == 0``) so a stall shows as a gap.
    """
    if window_s <= 0:
        raise ValueError(f"window must be positive, got {window_s}")
    t = np.asarray(times_s, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if t.shape != v.shape:
        raise ValueError(f"times and values differ in length: {t.size} vs {v.size}")
    if t.size == 0 and (start_s is None or end_s is None):
        return []
    t0 = float(t.min()) if start_s is None else float(start_s)
    t1 = float(t.max()) if end_s is None else float(end_s)
    n = max(1, int(math.ceil((t1 - t0) / window_s - 1e-9)))
    out = []
    for k in range(n):
        a = t0 + k * window_s
        b = a + window_s
        sel = (t >= a) & ((t < b) if k < n - 1 else (t <= max(b, t1)))
        out.append((a, summarize(v[sel])))
    return out


def _fmt(x: object, digits: int) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{digits}f}"
    return str(x)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 2) -> str:
    """A plain-text table with right-aligned numbers (floats with ``digits`` decimals, NaN as '-')."""
    cells = [[_fmt(c, digits) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )
        )
    return "\n".join(lines)


def format_kv(**values: object) -> str:
    """``key=value`` pairs for the machine-readable summary line (floats with 3 decimals)."""
    parts = []
    for k, v in values.items():
        if isinstance(v, float):
            v = "nan" if math.isnan(v) else f"{v:.3f}"
        elif isinstance(v, bool):
            v = "true" if v else "false"
        parts.append(f"{k}={v}")
    return " ".join(parts)


def parse_size(text: str) -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)`` (height x width)."""
    try:
        h, w = (int(p) for p in text.lower().strip().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HEIGHTxWIDTH (e.g. 480x640), got {text!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16x16, got {text!r}")
    return h, w


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"240x320,480x640"`` -> ``[(240, 320), (480, 640)]``."""
    return [parse_size(p) for p in text.split(",") if p.strip()]
