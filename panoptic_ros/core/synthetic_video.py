"""Short synthetic videos with exact per-frame identities, for measuring tracking (issue 18).

A sequence is one street scene from ``core/synthetic.py`` whose things move: the background
(stuff) and the photometric look are drawn once, the things are redrawn every frame at their
new position with the same appearance (each object draws its colours and shape from its own
seed every frame), and each frame gets fresh sensor noise. Things are drawn by the same
functions as the single scenes the default model was trained on, so they look the same.

Motion is rigid translation by an integer velocity in pixels per frame (so an object's full,
un-occluded mask at frame t+1 is exactly its mask at frame t shifted by its velocity, away
from the image border). Objects keep their depth, so the painter's order (far to near, a
rider right after its bicycle) is constant and occlusion is exact: occluded pixels belong to
the front object. Objects enter and leave through the sides; the first two cross each other
in the middle of the sequence, so every sequence has at least one occlusion.

Ground truth per frame (``Scene``): ``instance`` holds the **GT track id** (1..n, constant over
the sequence, not relabelled per frame); ``panoptic`` = class * label_divisor + track id. As
in single scenes, an object whose visible part is under ``MIN_VISIBLE_AREA`` pixels (scaled
with image area) is VOID in that frame (semantic 255, panoptic -1).

Seeds: ``sequence_seeds(n)`` starts at ``SEQUENCE_SEED_START`` (20,000,000), above every
training seed (< 10,000,000) and every validation seed (10,000,000 + i), so no sequence
background is a scene the model was trained or validated on. A sequence is a pure function of
``(seed, n_frames, height, width, taxonomy)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panoptic_ros.core.synthetic import (
    MIN_VISIBLE_AREA,
    THING_NAMES,
    UNLABELED,
    Scene,
    _apply_photometrics,
    _Canvas,
    _checked_taxonomy,
    _draw_background,
    _draw_bicycle,
    _draw_car,
    _draw_person,
    _photometric_params,
)
from panoptic_ros.core.taxonomy import Taxonomy

#: first held-out sequence seed (training < 10M, validation 10M + i)
SEQUENCE_SEED_START = 20_000_000


@dataclass(frozen=True)
class Mover:
    """One moving object. Its drawing anchor at frame t is ``(x + vx * t, foot + vy * t)``.

    track_id: the GT identity (its pixels' value in every frame's ``instance``).
    kind: "person", "car" or "bicycle"; rider: a person drawn right after (on) a bicycle.
    size: car width / person height / bicycle height in pixels; car_h: a car's height;
    z: painter's key (larger = nearer, drawn later); look_seed: its appearance.
    """

    track_id: int
    class_id: int
    kind: str
    x: float
    foot: float
    vx: int
    vy: int
    size: float
    car_h: float
    z: float
    side: bool
    rider: bool
    look_seed: int

    def anchor(self, t: int) -> tuple[float, float]:
        return self.x + self.vx * t, self.foot + self.vy * t

    def draw(self, cv_: _Canvas, t: int, label: int | None = None) -> None:
        """Draw at frame ``t`` with instance value ``label`` (default: the track id)."""
        rng = np.random.default_rng(self.look_seed)  # same appearance in every frame
        cx, foot = self.anchor(t)
        iid = self.track_id if label is None else label
        if self.kind == "car":
            _draw_car(cv_, rng, cx, foot, self.size, self.car_h, self.side, self.class_id, iid)
        elif self.kind == "person":
            _draw_person(cv_, rng, cx, foot, self.size, self.class_id, iid, riding=self.rider)
        else:
            _draw_bicycle(cv_, rng, cx, foot, self.size, self.class_id, iid)


@dataclass(frozen=True)
class VideoSequence:
    """Frames in order (``Scene``: image + GT with track ids) and the objects that made them."""

    seed: int
    frames: tuple[Scene, ...]
    movers: tuple[Mover, ...]
    taxonomy: Taxonomy

    def full_mask(self, track_id: int, t: int) -> np.ndarray:
        """The object's whole (amodal, un-occluded) mask at frame ``t``, for tests."""
        h, w = self.frames[0].semantic.shape
        cv_ = _Canvas(h, w)
        next(m for m in self.movers if m.track_id == track_id).draw(cv_, t, label=1)
        return cv_.inst == 1


def sequence_seeds(n: int, start: int = 0) -> list[int]:
    """The ``n`` held-out sequence seeds (disjoint from training and validation seeds)."""
    return [SEQUENCE_SEED_START + start + i for i in range(n)]


def generate_sequence(
    seed: int,
    n_frames: int = 30,
    height: int = 240,
    width: int = 320,
    taxonomy: Taxonomy | None = None,
) -> VideoSequence:
    """One video; deterministic in all arguments. See the module docstring."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if height < 16 or width < 16:
        raise ValueError(f"sequence size must be at least 16x16, got {height}x{width}")
    tax, ids = _checked_taxonomy(taxonomy)
    rng = np.random.default_rng(int(seed))
    H, W = int(height), int(width)
    s = H / 240.0
    bg = _Canvas(H, W)
    horizon, road_span = _draw_background(bg, rng, ids)
    look = _photometric_params(rng, H, W, s)
    movers = _plan_movers(rng, ids, H, W, s, horizon, road_span, n_frames)
    if max(m.track_id for m in movers) >= tax.label_divisor:
        raise ValueError(f"label_divisor {tax.label_divisor} too small for {len(movers)} tracks")
    order = sorted(movers, key=lambda m: (m.z, m.track_id))
    min_area = max(4, int(round(MIN_VISIBLE_AREA * s * s)))
    frames = []
    for t in range(n_frames):
        cv_ = _Canvas(H, W)
        cv_.img[:] = bg.img
        cv_.sem[:] = bg.sem
        for m in order:
            m.draw(cv_, t)
        noise = np.random.default_rng([int(seed), t])
        image = _apply_photometrics(cv_.img, cv_.sem, look, ids, noise)
        frames.append(_finish_frame(int(seed), image, cv_.sem, cv_.inst, tax, min_area))
    return VideoSequence(int(seed), tuple(frames), tuple(movers), tax)


def _plan_movers(rng, ids, H, W, s, horizon, road_span, n_frames) -> list[Mover]:
    """Kinds, depths, sizes and velocities as ``generate_scene`` picks them, plus motion: every
    object is at a uniform x at a random frame (so many enter or leave), some start just off
    screen and walk in, and objects 1 and 2 cross each other at mid-sequence."""
    PERSON, CAR, BIKE = (ids[n] for n in THING_NAMES)
    n = int(rng.integers(3, 8))
    movers: list[Mover] = []
    tid = 1
    mid = (n_frames - 1) / 2
    for k in range(n):
        kind = int(rng.choice(3, p=[0.42, 0.38, 0.20]))
        foot = horizon + (H - horizon) * rng.uniform(0.15, 1.0) ** 0.8 + rng.uniform(0, 0.08) * H
        depth = (foot - horizon) / (H - horizon)
        sc = max(0.12, depth) * rng.uniform(0.85, 1.15)
        direction = 1 if rng.random() < 0.5 else -1
        pace = 0.5 + depth
        car_h = 0.0
        if kind == 1:
            side = bool(rng.random() < 0.55)
            size = rng.uniform(95, 150) * s * sc
            car_h = size * rng.uniform(0.38, 0.5)
            size *= rng.uniform(1.3, 1.6) if side else 1.0
            speed = max(1, int(round(rng.uniform(1.5, 5.0) * pace * s)))
        elif kind == 0:
            side = False
            size = rng.uniform(120, 160) * s * sc
            speed = max(1, int(round(rng.uniform(0.8, 2.5) * pace * s)))
        else:
            side = False
            size = rng.uniform(75, 95) * s * sc
            speed = max(1, int(round(rng.uniform(1.2, 3.5) * pace * s)))
        vx = direction * speed
        vy = int(rng.choice([-1, 0, 1], p=[0.1, 0.8, 0.1])) if kind == 0 else 0
        if k < 2:  # the crossing pair: meet near the centre at mid-sequence, opposite directions
            vx = abs(vx) * (1 if k == 0 else -1)
            x = W * rng.uniform(0.4, 0.6) - vx * mid
        elif rng.random() < 0.3:  # walks in from off screen during the first half
            t_in = rng.uniform(0, n_frames / 2)
            edge = -size * 0.6 if vx > 0 else W + size * 0.6
            x = edge - vx * t_in
        else:
            x = rng.uniform(0, W) - vx * rng.uniform(0, n_frames)
        cls = (PERSON, CAR, BIKE)[kind]
        name = ("person", "car", "bicycle")[kind]
        movers.append(
            Mover(
                tid,
                cls,
                name,
                x,
                foot,
                vx,
                vy,
                size,
                car_h,
                foot,
                side,
                False,
                int(rng.integers(2**62)),
            )
        )
        tid += 1
        if kind == 2 and rng.random() < 0.5:  # a rider: separate person, moves with the bicycle
            movers.append(
                Mover(
                    tid,
                    PERSON,
                    "person",
                    x + size * 0.05,
                    foot - size * 0.45,
                    vx,
                    0,
                    size * 1.25,
                    0.0,
                    foot + 1e-3,
                    False,
                    True,
                    int(rng.integers(2**62)),
                )
            )
            tid += 1
    return movers


def _finish_frame(seed, image, sem, inst, tax: Taxonomy, min_area: int) -> Scene:
    """Void objects with too few visible pixels; keep track ids (no relabelling)."""
    area = np.bincount(inst.ravel(), minlength=int(inst.max()) + 1)
    small = area < min_area
    small[0] = False
    void = small[inst]
    sem = sem.copy()
    sem[void] = UNLABELED
    inst = np.where(void, 0, inst).astype(np.uint16)
    panoptic = sem.astype(np.int32) * tax.label_divisor + inst.astype(np.int32)
    panoptic[sem == UNLABELED] = -1
    return Scene(seed, image, sem, inst, panoptic, tax)
