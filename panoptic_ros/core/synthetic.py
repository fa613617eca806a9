"""Procedural street-like scenes with exact panoptic ground truth.

Nothing can be downloaded here, so the default model is trained and evaluated on these
scenes. Every scene is a pure function of ``(seed, height, width, taxonomy)``: the same
arguments give bit-identical images and labels (numpy ``default_rng`` + OpenCV drawing).

Layout of a scene (all sizes relative to the image, so any camera-like size works):
sky (gradient, optional clouds) above a horizon; buildings with window grids standing on
the horizon; trees (clustered blobs) and hedges; a perspective road towards a vanishing
point with lane markings; sidewalks with tile seams; then things painted far-to-near
(painter's algorithm gives real occlusion): cars (body, cabin, wheels), persons (legs,
torso, arms, head) and bicycles (thick wheel rings, frame), sometimes with a rider, who
is a separate person instance. Photometric variation: global gain, colour cast, smooth
illumination gradient, per-class texture, Gaussian noise, optional blur.

Ground truth: ``semantic`` (uint8 class id, 255 void), ``instance`` (uint16, 0 for stuff,
1..N contiguous for things), ``panoptic`` (int32 class*label_divisor + instance, -1 void).
Instances whose visible area falls under ``MIN_VISIBLE_AREA`` pixels after occlusion
become void (semantic 255, panoptic -1) rather than unlearnable slivers.

Seeds: training uses seeds in ``[0, VALIDATION_SEED_START)``, validation uses seeds
``>= VALIDATION_SEED_START`` (``validation_seeds(n)``), so the two sets never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from panoptic_ros.core.taxonomy import Taxonomy

#: first validation seed; training seeds are always below it
VALIDATION_SEED_START = 10_000_000
#: INT8 calibration scenes (families/quantize.py): beyond any validation run, so the PQ of a
#: quantized model is measured on scenes its calibration never saw
CALIBRATION_SEED_START = 20_000_000
#: visible pixels (relative to a 240x320 image, scaled with area) under which an instance becomes void
MIN_VISIBLE_AREA = 20
#: class names the generator draws (must exist in the taxonomy)
STUFF_NAMES = ("road", "sidewalk", "building", "vegetation", "sky")
THING_NAMES = ("person", "car", "bicycle")
#: camera-like aspect ratios (width / height) used by ``random_camera_size``
CAMERA_ASPECTS = (4 / 3, 16 / 9, 16 / 10, 3 / 2, 5 / 4)

UNLABELED = 255


@dataclass(frozen=True)
class Segment:
    """One ground-truth segment. ``bbox`` is (x0, y0, x1, y1), x1/y1 exclusive."""

    panoptic_id: int
    class_id: int
    instance_id: int
    is_thing: bool
    area: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """image (H,W,3) uint8 RGB; semantic (H,W) uint8 (255 void); instance (H,W) uint16;
    panoptic (H,W) int32 (class*label_divisor + instance, -1 void); segments in id order."""

    seed: int
    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    panoptic: np.ndarray
    taxonomy: Taxonomy

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        """Ground-truth segments in panoptic-id order (computed on first use)."""
        return _segments(self.panoptic, self.taxonomy)


def validation_seeds(n: int, start: int = 0) -> list[int]:
    """The ``n`` validation seeds (disjoint from every training seed)."""
    return [VALIDATION_SEED_START + start + i for i in range(n)]


def calibration_seeds(n: int, start: int = 0) -> list[int]:
    """The ``n`` INT8 calibration seeds (disjoint from training and the first 10 M validation seeds)."""
    return [CALIBRATION_SEED_START + start + i for i in range(n)]


def training_seed(i: int, base: int = 0) -> int:
    """Map a running index to a training seed, always below VALIDATION_SEED_START."""
    return (base * 1_000_003 + i) % VALIDATION_SEED_START


def random_camera_size(rng: np.random.Generator, height: int) -> tuple[int, int]:
    """A camera-like (H, W) with the given height and a random common aspect ratio."""
    aspect = CAMERA_ASPECTS[int(rng.integers(len(CAMERA_ASPECTS)))]
    return height, int(round(height * aspect))


class _Canvas:
    """Image (float32 RGB) plus label maps drawn together."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.img = np.zeros((h, w, 3), np.float32)
        self.sem = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.uint16)

    def poly(self, pts, color, cls: int, inst: int = 0) -> None:
        p = [np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)]
        cv2.fillPoly(self.img, p, tuple(float(c) for c in color), cv2.LINE_8, 4)
        cv2.fillPoly(self.sem, p, int(cls), cv2.LINE_8, 4)
        cv2.fillPoly(self.inst, p, int(inst), cv2.LINE_8, 4)

    def rect(self, x0, y0, x1, y1, color, cls: int, inst: int = 0) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, cls, inst)

    def ellipse(self, cx, cy, ax, ay, color, cls: int, inst: int = 0, angle: float = 0.0) -> None:
        c = (int(round(cx * 16)), int(round(cy * 16)))
        a = (max(1, int(round(ax * 16))), max(1, int(round(ay * 16))))
        cv2.ellipse(
            self.img, c, a, angle, 0, 360, tuple(float(v) for v in color), -1, cv2.LINE_8, 4
        )
        cv2.ellipse(self.sem, c, a, angle, 0, 360, int(cls), -1, cv2.LINE_8, 4)
        cv2.ellipse(self.inst, c, a, angle, 0, 360, int(inst), -1, cv2.LINE_8, 4)

    def ring(self, cx, cy, r, thick, color, cls: int, inst: int = 0) -> None:
        c = (int(round(cx * 16)), int(round(cy * 16)))
        rr = max(1, int(round(r * 16)))
        t = max(1, int(round(thick)))
        cv2.circle(self.img, c, rr, tuple(float(v) for v in color), t, cv2.LINE_8, 4)
        cv2.circle(self.sem, c, rr, int(cls), t, cv2.LINE_8, 4)
        cv2.circle(self.inst, c, rr, int(inst), t, cv2.LINE_8, 4)

    def line(self, p0, p1, thick, color, cls: int, inst: int = 0) -> None:
        a = (int(round(p0[0] * 16)), int(round(p0[1] * 16)))
        b = (int(round(p1[0] * 16)), int(round(p1[1] * 16)))
        t = max(1, int(round(thick)))
        cv2.line(self.img, a, b, tuple(float(v) for v in color), t, cv2.LINE_8, 4)
        cv2.line(self.sem, a, b, int(cls), t, cv2.LINE_8, 4)
        cv2.line(self.inst, a, b, int(inst), t, cv2.LINE_8, 4)

    def paint(self, pts, color) -> None:
        """Image only (texture detail that does not change labels)."""
        p = [np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)]
        cv2.fillPoly(self.img, p, tuple(float(c) for c in color), cv2.LINE_8, 4)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """(h, w) float32 smooth noise in about [-1, 1] with feature size ~cell pixels."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC) * 0.6


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    """Uniform in [a, b] that tolerates b < a (then in [b, a])."""
    return float(a + (b - a) * rng.random())


def _jitter(rng, base, amount=20.0):
    return np.clip(np.asarray(base, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def generate_scene(
    seed: int, height: int = 240, width: int = 320, taxonomy: Taxonomy | None = None
) -> Scene:
    """One procedural scene; deterministic in all arguments. See the module docstring."""
    if height < 16 or width < 16:
        raise ValueError(f"scene size must be at least 16x16, got {height}x{width}")
    tax, ids = _checked_taxonomy(taxonomy)
    PERSON, CAR, BIKE = (ids[n] for n in THING_NAMES)

    rng = np.random.default_rng(int(seed))
    H, W = int(height), int(width)
    cv_ = _Canvas(H, W)
    s = H / 240.0  # size unit relative to the reference 240-pixel-high scene
    horizon, road_span = _draw_background(cv_, rng, ids)

    # ---- things, far to near (painter's algorithm = occlusion) ------------------------------
    n_things = int(rng.integers(2, 11))
    things = []
    for _ in range(n_things):
        kind = rng.choice(3, p=[0.42, 0.38, 0.20])
        foot = horizon + (H - horizon) * rng.uniform(0.08, 1.0) ** 0.8 + rng.uniform(0, 0.08) * H
        things.append((foot, int(kind)))
    things.sort(key=lambda t: t[0])
    next_id = 1
    for foot, kind in things:
        depth = (foot - horizon) / (H - horizon)  # 0 at horizon, ~1 at bottom
        sc = max(0.12, depth) * rng.uniform(0.85, 1.15)
        lo, hi = road_span(min(foot, H))
        if kind == 1:  # car: on the road
            cw = rng.uniform(95, 150) * s * sc
            chh = cw * rng.uniform(0.38, 0.5)
            side = rng.random() < 0.55
            if side:
                cw *= rng.uniform(1.3, 1.6)
            cxp = (
                rng.uniform(lo + cw * 0.3, hi - cw * 0.3)
                if hi - lo > cw * 0.6
                else rng.uniform(0, W)
            )
            _draw_car(cv_, rng, cxp, foot, cw, chh, side, CAR, next_id)
            next_id += 1
        elif kind == 0:  # person: mostly on the sidewalk
            ph = rng.uniform(120, 160) * s * sc
            if rng.random() < 0.75:
                cxp = _u(rng, -0.05 * W, lo) if rng.random() < 0.5 else _u(rng, hi, 1.05 * W)
            else:
                cxp = _u(rng, lo, hi)
            _draw_person(cv_, rng, cxp, foot, ph, PERSON, next_id)
            next_id += 1
        else:  # bicycle, sometimes ridden
            bh = rng.uniform(75, 95) * s * sc
            cxp = _u(rng, lo - bh, hi + bh)
            _draw_bicycle(cv_, rng, cxp, foot, bh, BIKE, next_id)
            next_id += 1
            if rng.random() < 0.5:
                _draw_person(
                    cv_,
                    rng,
                    cxp + bh * 0.05,
                    foot - bh * 0.45,
                    bh * 1.25,
                    PERSON,
                    next_id,
                    riding=True,
                )
                next_id += 1

    # ---- photometrics: texture, lighting, noise, blur ----------------------------------------
    look = _photometric_params(rng, H, W, s)
    image = _apply_photometrics(cv_.img, cv_.sem, look, ids, rng)
    return _finish(int(seed), image, cv_.sem, cv_.inst, tax, s)


def _checked_taxonomy(taxonomy: Taxonomy | None) -> tuple[Taxonomy, dict[str, int]]:
    """The taxonomy (default if None) and its class ids by name; ValueError if it lacks a class
    the generator draws."""
    tax = taxonomy or _default_taxonomy()
    ids = {c.name: c.id for c in tax.classes}
    missing = [n for n in STUFF_NAMES + THING_NAMES if n not in ids]
    if missing:
        raise ValueError(f"taxonomy lacks classes the generator draws: {missing}")
    return tax, ids


def _draw_background(cv_: _Canvas, rng: np.random.Generator, ids: dict[str, int]):
    """Stuff only (sky, buildings, ground, road, vegetation) onto ``cv_``; returns the horizon
    row and ``road_span(y) -> (x_left, x_right)``. Split out of ``generate_scene`` (same draws
    from ``rng`` in the same order, so scenes are unchanged) for the video sequences, whose
    background is drawn once and whose things move over it."""
    ROAD, WALK, BUILD, VEG, SKY = (ids[n] for n in STUFF_NAMES)
    H, W = cv_.h, cv_.w
    s = H / 240.0
    # ---- sky --------------------------------------------------------------------
    horizon = rng.uniform(0.36, 0.56) * H
    sky_top = np.array(
        [rng.uniform(40, 110), rng.uniform(90, 160), rng.uniform(170, 240)]
        if rng.random() < 0.7
        else [rng.uniform(150, 200)] * 3,
        np.float32,
    )
    sky_bottom = np.clip(sky_top + rng.uniform(20, 70), 0, 255)
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    cv_.img[:] = (sky_top * (1 - t) + sky_bottom * t)[:, None, :]
    cv_.sem[:] = SKY
    for _ in range(int(rng.integers(0, 4))):  # clouds: soft white blobs, still sky
        cx, cy = rng.uniform(0, W), rng.uniform(0, horizon * 0.6)
        for _k in range(4):
            ax, ay = rng.uniform(10, 35) * s, rng.uniform(5, 12) * s
            cv2.ellipse(
                cv_.img,
                (int(cx + rng.uniform(-25, 25) * s), int(cy + rng.uniform(-6, 6) * s)),
                (int(ax), int(ay)),
                0,
                0,
                360,
                tuple(float(v) for v in _jitter(rng, [230, 230, 235], 15)),
                -1,
            )

    # ---- buildings ----------------------------------------------------------------
    x = rng.uniform(-40, 0) * s
    while x < W:
        bw = rng.uniform(35, 120) * s
        if rng.random() < 0.18:  # gap shows sky / trees behind
            x += bw * 0.6
            continue
        top = rng.uniform(0.03, 0.8) * horizon
        bottom = horizon + rng.uniform(2, 10) * s
        base = _jitter(
            rng,
            [
                [150, 140, 130],
                [120, 110, 100],
                [170, 160, 140],
                [100, 100, 110],
                [160, 90, 70],
                [190, 185, 175],
            ][int(rng.integers(6))],
            25,
        )
        cv_.rect(x, top, x + bw, bottom, base, BUILD)
        # window grid (image only)
        wx, wy = rng.uniform(7, 14) * s, rng.uniform(9, 16) * s
        ww, wh = wx * rng.uniform(0.4, 0.65), wy * rng.uniform(0.4, 0.6)
        wcol = _jitter(rng, [60, 70, 90] if rng.random() < 0.7 else [200, 200, 160], 20)
        ys = np.arange(top + wy * 0.6, bottom - wy, wy)
        xs = np.arange(x + wx * 0.5, x + bw - wx * 0.8, wx)
        if len(ys) and len(xs) and rng.random() < 0.85:
            bx0, bx1 = max(0, int(x)), min(W, int(x + bw))
            by0, by1 = max(0, int(top)), min(H, int(bottom))
            if bx1 > bx0 and by1 > by0:
                yr = np.arange(by0, by1)
                xr = np.arange(bx0, bx1)
                rows = ((yr - ys[0]) % wy < wh) & (yr >= ys[0]) & (yr < ys[-1] + wh)
                cols = ((xr - xs[0]) % wx < ww) & (xr >= xs[0]) & (xr < xs[-1] + ww)
                region = cv_.img[by0:by1, bx0:bx1]
                region[rows[:, None] & cols[None, :]] = wcol
        x += bw

    # ---- ground: sidewalk everywhere below the horizon, then the road ------------------
    walk_col = _jitter(rng, [175, 170, 160], 25)
    cv_.rect(-1, horizon, W + 1, H + 1, walk_col, WALK)
    # tile seams on the sidewalk (image only), denser towards the horizon
    seam = walk_col * 0.8
    y = float(H)
    step = 14 * s
    while y > horizon + 2:
        cv_.img[int(y) : int(y) + max(1, int(s)), :] = np.where(
            (cv_.sem[int(y) : int(y) + max(1, int(s)), :, None] == WALK),
            seam,
            cv_.img[int(y) : int(y) + max(1, int(s)), :],
        )
        y -= step * max(0.25, (y - horizon) / (H - horizon))
    vx = rng.uniform(0.25, 0.75) * W
    half_bottom = rng.uniform(0.35, 0.7) * W
    centre_bottom = vx + rng.uniform(-0.25, 0.25) * W
    half_top = rng.uniform(0.01, 0.05) * W
    road_col = _jitter(rng, [85, 85, 90], 20)
    road = [
        (vx - half_top, horizon),
        (vx + half_top, horizon),
        (centre_bottom + half_bottom, H + 1),
        (centre_bottom - half_bottom, H + 1),
    ]
    cv_.poly(road, road_col, ROAD)
    # lane markings (image only): dashes along the centre line
    lane = _jitter(rng, [230, 230, 220] if rng.random() < 0.8 else [220, 190, 60], 10)
    n_dash = 7
    for i in range(n_dash):
        if rng.random() < 0.15:
            continue
        f0 = (i + 0.1) / n_dash
        f1 = (i + 0.55) / n_dash
        y0, y1 = horizon + (H - horizon) * f0**1.6, horizon + (H - horizon) * f1**1.6

        def cx(y):
            f = (y - horizon) / (H - horizon)
            return vx + (centre_bottom - vx) * f

        def hw(y):
            f = (y - horizon) / (H - horizon)
            return 0.5 + 4 * s * f

        cv_.paint(
            [
                (cx(y0) - hw(y0), y0),
                (cx(y0) + hw(y0), y0),
                (cx(y1) + hw(y1), y1),
                (cx(y1) - hw(y1), y1),
            ],
            lane,
        )

    def road_span(y):
        f = np.clip((y - horizon) / (H - horizon), 0, 1)
        c = vx + (centre_bottom - vx) * f
        h = half_top + (half_bottom - half_top) * f
        return c - h, c + h

    # ---- vegetation: trees behind the kerb line, hedges ---------------------------------
    for _ in range(int(rng.integers(1, 6))):
        tx = rng.uniform(-0.05, 1.05) * W
        ty = horizon + rng.uniform(-2, 20) * s
        lo, hi = road_span(ty)
        if lo < tx < hi:
            tx = lo - rng.uniform(5, 40) * s if rng.random() < 0.5 else hi + rng.uniform(5, 40) * s
        scale = rng.uniform(0.6, 1.6) * (1 + (ty - horizon) / (H - horizon))
        green = _jitter(
            rng,
            [[60, 110, 40], [80, 130, 50], [40, 90, 40], [100, 120, 50]][int(rng.integers(4))],
            15,
        )
        trunk_h = rng.uniform(15, 35) * s * scale
        cv_.rect(
            tx - 2.5 * s * scale,
            ty - trunk_h,
            tx + 2.5 * s * scale,
            ty,
            _jitter(rng, [90, 70, 50], 15),
            VEG,
        )
        cr = rng.uniform(14, 28) * s * scale
        cy = ty - trunk_h - cr * 0.5
        for _k in range(int(rng.integers(3, 7))):
            cv_.ellipse(
                tx + rng.uniform(-0.8, 0.8) * cr,
                cy + rng.uniform(-0.6, 0.5) * cr,
                cr * rng.uniform(0.5, 0.9),
                cr * rng.uniform(0.45, 0.8),
                green * rng.uniform(0.85, 1.15),
                VEG,
            )
    for _ in range(int(rng.integers(0, 3))):  # hedge / grass strip on one side
        y0 = horizon + rng.uniform(0.0, 0.3) * (H - horizon)
        hh = rng.uniform(6, 18) * s * (1 + (y0 - horizon) / (H - horizon))
        lo, hi = road_span(y0)
        if rng.random() < 0.5:
            xa, xb = _u(rng, -20, max(-10, lo - 60 * s)), lo - rng.uniform(8, 30) * s
        else:
            xa, xb = hi + rng.uniform(8, 30) * s, _u(rng, min(W + 10, hi + 60 * s), W + 20)
        if xb - xa > 8 * s:
            cv_.ellipse((xa + xb) / 2, y0, (xb - xa) / 2, hh, _jitter(rng, [70, 120, 45], 20), VEG)

    return horizon, road_span


@dataclass(frozen=True)
class _Look:
    """Photometric parameters of one scene (drawn once, applied to every frame of a sequence)."""

    coarse: np.ndarray
    fine: np.ndarray
    gain: float
    cast: np.ndarray
    gy: float
    gx: float
    blur_sigma: float | None
    noise_sigma: float


def _photometric_params(rng: np.random.Generator, H: int, W: int, s: float) -> _Look:
    """Draws texture fields, gain, colour cast, lighting slope, blur and noise level (in the
    order ``generate_scene`` always drew them)."""
    coarse = _smooth_noise(rng, H, W, max(4, int(24 * s)))
    fine = _smooth_noise(rng, H, W, max(2, int(3 * s)))
    gain = rng.uniform(0.6, 1.25)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    gy, gx = rng.uniform(-0.35, 0.35, 2)
    blur = rng.uniform(0.4, 1.3) * s if rng.random() < 0.35 else None
    noise_sigma = rng.uniform(0, 7)
    return _Look(coarse, fine, gain, cast, gy, gx, blur, noise_sigma)


def _apply_photometrics(
    img: np.ndarray,
    sem: np.ndarray,
    look: _Look,
    ids: dict[str, int],
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """Per-class texture, lighting, colour cast, blur and sensor noise (from ``noise_rng``) on the
    float image (modified in place); returns the uint8 image."""
    H, W = sem.shape
    tex_amp = np.zeros(256, np.float32)
    tex_amp[[ids[n] for n in STUFF_NAMES + THING_NAMES]] = [
        0.08,
        0.07,
        0.07,
        0.22,
        0.03,
        0.06,
        0.04,
        0.04,
    ]
    amp = tex_amp[sem]
    img *= (1.0 + amp * (0.6 * look.coarse + 0.8 * look.fine))[:, :, None]
    yy = np.linspace(-0.5, 0.5, H, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, W, dtype=np.float32)[None, :]
    light = look.gain * (1.0 + look.gy * yy + look.gx * xx)
    img *= light[:, :, None] * look.cast
    if look.blur_sigma is not None:
        img = cv2.GaussianBlur(img, (0, 0), look.blur_sigma)
    # uniform noise from raw bytes (4x cheaper than standard_normal), scaled to std = noise_sigma
    u = np.frombuffer(noise_rng.bytes(H * W * 3), np.uint8).reshape(H, W, 3).astype(np.float32)
    img += (u - 127.5) * np.float32(look.noise_sigma / 73.9)
    return np.clip(img, 0, 255).astype(np.uint8)


def _finish(seed, image, sem, inst, tax: Taxonomy, s: float) -> Scene:
    """Void tiny instances, relabel 1..N contiguously, encode panoptic, list segments."""
    H, W = sem.shape
    n = int(inst.max()) + 1
    area = np.bincount(inst.ravel(), minlength=n)
    min_area = max(4, int(round(MIN_VISIBLE_AREA * s * s)))
    keep = area >= min_area
    keep[0] = True
    newid = np.zeros(n, np.uint16)
    kept = np.flatnonzero(keep[1:]) + 1
    newid[kept] = np.arange(1, len(kept) + 1, dtype=np.uint16)
    void = ~keep[inst]
    sem = sem.copy()
    sem[void] = UNLABELED
    inst = newid[inst]
    thing_lut = np.zeros(256, bool)
    thing_lut[list(tax.thing_ids)] = True
    # a thing-class pixel always carries an instance id and stuff never does (by construction)
    panoptic = sem.astype(np.int32) * tax.label_divisor + inst.astype(np.int32)
    panoptic[sem == UNLABELED] = -1
    return Scene(seed, image, sem, inst.astype(np.uint16), panoptic, tax)


def _segments(panoptic: np.ndarray, tax: Taxonomy) -> tuple[Segment, ...]:
    """Segments with area and exclusive bbox, from row/column projections (no pixel loop)."""
    ids, inv = np.unique(panoptic, return_inverse=True)
    inv = inv.reshape(panoptic.shape)
    n = len(ids)
    H, W = panoptic.shape
    counts = np.bincount(inv.ravel(), minlength=n)
    rows = np.bincount((inv * H + np.arange(H)[:, None]).ravel(), minlength=n * H).reshape(n, H) > 0
    cols = np.bincount((inv * W + np.arange(W)[None, :]).ravel(), minlength=n * W).reshape(n, W) > 0
    y0 = rows.argmax(1)
    y1 = H - rows[:, ::-1].argmax(1)
    x0 = cols.argmax(1)
    x1 = W - cols[:, ::-1].argmax(1)
    thing = set(tax.thing_ids)
    out = []
    for k, pid in enumerate(ids.tolist()):
        if pid < 0:
            continue
        c, i = divmod(pid, tax.label_divisor)
        out.append(
            Segment(
                pid,
                c,
                i,
                c in thing,
                int(counts[k]),
                (int(x0[k]), int(y0[k]), int(x1[k]), int(y1[k])),
            )
        )
    return tuple(out)


def _draw_car(cv_: _Canvas, rng, cx, foot, w, h, side: bool, cls: int, iid: int) -> None:
    body = _jitter(
        rng,
        [
            [200, 30, 30],
            [30, 60, 160],
            [230, 230, 230],
            [30, 30, 35],
            [160, 160, 170],
            [40, 120, 60],
            [220, 180, 40],
        ][int(rng.integers(7))],
        20,
    )
    glass = _jitter(rng, [50, 70, 90], 15)
    dark = _jitter(rng, [25, 25, 25], 8)
    x0, x1 = cx - w / 2, cx + w / 2
    wheel_r = h * (0.2 if side else 0.14)
    y_body_bot = foot - wheel_r * 0.6
    y_body_top = foot - h * 0.6
    y_roof = foot - h
    cut = w * 0.04
    cv_.poly(
        [
            (x0 + cut, y_body_top),
            (x1 - cut, y_body_top),
            (x1, y_body_top + cut),
            (x1, y_body_bot),
            (x0, y_body_bot),
            (x0, y_body_top + cut),
        ],
        body,
        cls,
        iid,
    )
    if side:
        r0, r1 = x0 + w * rng.uniform(0.15, 0.3), x1 - w * rng.uniform(0.2, 0.35)
        cv_.poly(
            [
                (r0 - w * 0.08, y_body_top),
                (r0 + w * 0.05, y_roof),
                (r1 - w * 0.05, y_roof),
                (r1 + w * 0.1, y_body_top),
            ],
            body,
            cls,
            iid,
        )
        cv_.paint(
            [
                (r0 - w * 0.04, y_body_top),
                (r0 + w * 0.07, y_roof + h * 0.07),
                (r1 - w * 0.07, y_roof + h * 0.07),
                (r1 + w * 0.06, y_body_top),
            ],
            glass,
        )
        for wx in (x0 + w * 0.2, x1 - w * 0.2):
            cv_.ellipse(wx, foot - wheel_r, wheel_r, wheel_r, dark, cls, iid)
            cv_.ellipse(
                wx, foot - wheel_r, wheel_r * 0.45, wheel_r * 0.45, (150, 150, 150), cls, iid
            )
    else:
        cv_.poly(
            [
                (x0 + w * 0.05, y_body_top),
                (x0 + w * 0.15, y_roof),
                (x1 - w * 0.15, y_roof),
                (x1 - w * 0.05, y_body_top),
            ],
            body,
            cls,
            iid,
        )
        cv_.paint(
            [
                (x0 + w * 0.1, y_body_top),
                (x0 + w * 0.18, y_roof + h * 0.06),
                (x1 - w * 0.18, y_roof + h * 0.06),
                (x1 - w * 0.1, y_body_top),
            ],
            glass,
        )
        cv_.rect(x0 + w * 0.04, y_body_bot, x0 + w * 0.2, foot, dark, cls, iid)
        cv_.rect(x1 - w * 0.2, y_body_bot, x1 - w * 0.04, foot, dark, cls, iid)
        lamp = (230, 40, 30) if rng.random() < 0.5 else (250, 240, 200)
        cv_.paint(
            [
                (x0 + w * 0.04, y_body_top + h * 0.1),
                (x0 + w * 0.16, y_body_top + h * 0.1),
                (x0 + w * 0.16, y_body_top + h * 0.2),
                (x0 + w * 0.04, y_body_top + h * 0.2),
            ],
            lamp,
        )
        cv_.paint(
            [
                (x1 - w * 0.16, y_body_top + h * 0.1),
                (x1 - w * 0.04, y_body_top + h * 0.1),
                (x1 - w * 0.04, y_body_top + h * 0.2),
                (x1 - w * 0.16, y_body_top + h * 0.2),
            ],
            lamp,
        )


def _draw_person(cv_: _Canvas, rng, cx, foot, h, cls: int, iid: int, riding: bool = False) -> None:
    shirt = _jitter(rng, rng.uniform(20, 235, 3), 0)
    pants = _jitter(
        rng, [[40, 40, 60], [30, 30, 30], [90, 80, 60], [50, 60, 110]][int(rng.integers(4))], 15
    )
    skin = _jitter(rng, [[230, 190, 160], [190, 140, 100], [120, 80, 55]][int(rng.integers(3))], 12)
    w = h * rng.uniform(0.24, 0.32)
    leg_top = foot - h * 0.47
    leg_w = w * 0.22
    stride = rng.uniform(-0.15, 0.15) * h
    if not riding:
        cv_.line(
            (cx - w * 0.15, leg_top),
            (cx - w * 0.15 - stride * 0.5, foot - leg_w / 2),
            leg_w * 1.1,
            pants,
            cls,
            iid,
        )
        cv_.line(
            (cx + w * 0.15, leg_top),
            (cx + w * 0.15 + stride * 0.5, foot - leg_w / 2),
            leg_w * 1.1,
            pants,
            cls,
            iid,
        )
    else:
        cv_.line((cx, leg_top), (cx + w * 0.5, foot - h * 0.1), leg_w * 1.1, pants, cls, iid)
    torso_top = foot - h * 0.82
    cv_.ellipse(
        cx,
        (torso_top + leg_top) / 2 + h * 0.02,
        w * 0.5,
        (leg_top - torso_top) / 2 + h * 0.04,
        shirt,
        cls,
        iid,
    )
    arm = leg_w * 0.9
    swing = rng.uniform(-0.12, 0.12) * h
    cv_.line(
        (cx - w * 0.42, torso_top + h * 0.05),
        (cx - w * 0.5 + swing * 0.4, leg_top + h * 0.04),
        arm,
        shirt,
        cls,
        iid,
    )
    cv_.line(
        (cx + w * 0.42, torso_top + h * 0.05),
        (cx + w * 0.5 - swing * 0.4, leg_top + h * 0.04),
        arm,
        shirt,
        cls,
        iid,
    )
    cv_.ellipse(cx, foot - h * 0.9, w * 0.3, h * 0.085, skin, cls, iid)
    if rng.random() < 0.4:  # hair / hat
        cv_.ellipse(
            cx, foot - h * 0.95, w * 0.31, h * 0.045, _jitter(rng, [40, 30, 20], 20), cls, iid
        )


def _draw_bicycle(cv_: _Canvas, rng, cx, foot, h, cls: int, iid: int) -> None:
    col = _jitter(rng, rng.uniform(30, 220, 3), 0)
    tyre = _jitter(rng, [30, 30, 30], 8)
    r = h * 0.33
    gap = h * 1.05
    t = max(2.0, r * 0.28)
    lx, rx = cx - gap / 2, cx + gap / 2
    wy = foot - r
    cv_.ring(lx, wy, r - t / 2, t, tyre, cls, iid)
    cv_.ring(rx, wy, r - t / 2, t, tyre, cls, iid)
    ft = max(2.0, r * 0.2)
    seat = (cx - gap * 0.12, foot - h * 0.9)
    bar = (rx - gap * 0.1, foot - h * 0.95)
    crank = (cx, wy)
    for a, b in (
        ((lx, wy), crank),
        (crank, seat),
        (seat, (lx, wy)),
        (seat, bar),
        (bar, crank),
        (bar, (rx, wy)),
    ):
        cv_.line(a, b, ft, col, cls, iid)
    cv_.line((bar[0] - gap * 0.08, bar[1]), (bar[0] + gap * 0.08, bar[1]), ft, col, cls, iid)


_TAX_CACHE: list[Taxonomy] = []


def _default_taxonomy() -> Taxonomy:
    if not _TAX_CACHE:
        _TAX_CACHE.append(Taxonomy.default())
    return _TAX_CACHE[0]
