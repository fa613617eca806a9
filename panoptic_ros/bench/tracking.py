"""Tracking micro-benchmark (``panoptic-ros bench --tracking``): core.tracking.Tracker alone.

Why a separate bench: the tracker's cost depends on the number of objects and the image size,
not on the model, and the goal (issue 18: <= 1 ms per frame for 30 objects at 480x640) is stated
that way. The scene: ``objects`` rectangles and discs of 3 classes, 20-90 px, moving at up to
6 px per frame, painted in a fixed order so they occlude one another, leaving and entering the
image; each frame's instances are numbered 1..N in a shuffled order, as a segmenter would.
The frames are built before timing; each timed call is one ``Tracker.update`` (association,
id allocation, relabelling of the instance and panoptic images, new Instances).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from panoptic_ros.core.tracking import Tracker, TrackerConfig
from panoptic_ros.core.types import Instance, PanopticResult

LABEL_DIVISOR = 1000
#: the issue's goal per frame
GOAL_MS = 1.0


@dataclass
class TrackingRow:
    case: str
    objects: int
    height: int
    width: int
    median_ms: float
    p90_ms: float
    cpu_median_ms: float
    mean_live_tracks: float

    @property
    def meets_goal(self) -> bool:
        return self.median_ms <= GOAL_MS


def moving_scene(
    n_objects: int, height: int, width: int, n_frames: int, seed: int = 0
) -> list[PanopticResult]:
    """``n_frames`` results of ``n_objects`` moving, occluding things (see the module docstring)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 0], [width, height], (n_objects, 2))
    vel = rng.uniform(-6, 6, (n_objects, 2))
    size = rng.uniform(20, 90, (n_objects, 2))
    cls = rng.integers(1, 4, n_objects)
    disc = rng.random(n_objects) < 0.5
    yy, xx = np.mgrid[:height, :width]
    out = []
    for t in range(n_frames):
        p = pos + vel * t
        p[:, 0] %= width + 100  # wrap around: objects leave and come back
        p[:, 1] %= height + 100
        p -= 50
        paint = np.zeros((height, width), np.int32)
        for k in range(n_objects):
            x0, y0 = int(p[k, 0]), int(p[k, 1])
            w, h = int(size[k, 0]), int(size[k, 1])
            xa, xb, ya, yb = max(x0, 0), min(x0 + w, width), max(y0, 0), min(y0 + h, height)
            if xa >= xb or ya >= yb:
                continue
            win = paint[ya:yb, xa:xb]
            if disc[k]:
                cx, cy = x0 + w / 2, y0 + h / 2
                m = ((xx[ya:yb, xa:xb] - cx) / (w / 2)) ** 2 + (
                    (yy[ya:yb, xa:xb] - cy) / (h / 2)
                ) ** 2 <= 1
                win[m] = k + 1
            else:
                win[:] = k + 1
        present = [k for k in rng.permutation(n_objects) if (paint == k + 1).any()]
        inst = np.zeros((height, width), np.uint16)
        sem = np.zeros((height, width), np.uint8)
        instances = []
        for iid, k in enumerate(present, 1):
            m = paint == k + 1
            ys, xs = np.nonzero(m)
            inst[m], sem[m] = iid, cls[k]
            instances.append(
                Instance(
                    iid,
                    int(cls[k]),
                    0.9,
                    (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                    int(xs.size),
                    (float(xs.mean()), float(ys.mean())),
                )
            )
        pan = sem.astype(np.int32) * LABEL_DIVISOR + inst
        out.append(PanopticResult(sem, inst, pan, tuple(instances)))
    return out


def time_tracker(
    config: TrackerConfig, frames: list[PanopticResult], warmup: int
) -> tuple[list[float], list[float], float]:
    """Wall and CPU ms per timed ``update`` (after ``warmup`` frames), mean live tracks."""
    tracker = Tracker(config, LABEL_DIVISOR)
    wall, cpu, live = [], [], []
    for i, res in enumerate(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        tracker.update(res, stamp_ns=i * 33_333_333)
        t1, c1 = time.perf_counter(), time.process_time()
        if i >= warmup:
            wall.append((t1 - t0) * 1e3)
            cpu.append((c1 - c0) * 1e3)
            live.append(len(tracker.live_ids))
    return wall, cpu, float(np.mean(live)) if live else 0.0


def run_all(
    frames: int, warmup: int, objects: int = 30, height: int = 480, width: int = 640
) -> list[TrackingRow]:
    """One row per tracker configuration of interest (the default first)."""
    scene = moving_scene(objects, height, width, frames + warmup)
    default = TrackerConfig()
    other = "box" if default.similarity == "mask" else "mask"
    cases = [
        (f"default ({default.similarity})", default),
        (other, dataclasses.replace(default, similarity=other)),
    ]
    try:
        cases.append(("hungarian", dataclasses.replace(default, assignment="hungarian")))
    except ValueError:  # no scipy here
        pass
    rows = []
    for name, cfg in cases:
        wall, cpu, live = time_tracker(cfg, scene, warmup)
        rows.append(
            TrackingRow(
                name,
                objects,
                height,
                width,
                float(np.median(wall)),
                float(np.percentile(wall, 90)),
                float(np.median(cpu)),
                live,
            )
        )
    return rows
