"""Host post-processing: pure numpy functions from the network's integer maps to a PanopticResult.

The graph already did argmax, centre NMS/TopK and offset grouping (model.PanopticPostProcess).
What is left needs data-dependent shapes: upsampling to the input resolution, majority-vote class
per instance, area filters, contiguous relabelling and per-instance records. Everything is
vectorised (np.bincount over pixels, LUT indexing); the only Python loop runs over <= K instances.

Conventions (types.py): semantic uint8 (uint16 when > 254 classes) with 255 (65535) = unlabeled;
instance uint16, 0 = stuff / none, 1..N = Instance.id; panoptic int32 = class * label_divisor +
instance, -1 = void.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from panoptic_ros.core.preprocess import labels_to_input
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import VOID, Instance, PanopticResult, Segments


@dataclass(frozen=True)
class PostprocessConfig:
    """Run-time tunables.

    center_threshold: centre-heatmap score a centre must exceed (graph input), in (0, 1].
    stuff_area_min: stuff classes covering fewer input pixels than this become unlabeled (>= 0).
    min_instance_area: instances with fewer input pixels are dropped (-> unlabeled) (>= 0).
    """

    center_threshold: float = 0.1
    stuff_area_min: int = 64
    min_instance_area: int = 16

    def __post_init__(self) -> None:
        validate_config(self)


def validate_config(cfg: PostprocessConfig) -> None:
    """Raise ValueError naming the field and its allowed range."""
    t = cfg.center_threshold
    if (
        not isinstance(t, (int, float))
        or isinstance(t, bool)
        or not np.isfinite(t)
        or not 0.0 < float(t) <= 1.0
    ):
        raise ValueError(f"center_threshold must be a number in (0, 1], got {t!r}")
    for name in ("stuff_area_min", "min_instance_area"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 or v > 2**31 - 1:
            raise ValueError(f"{name} must be an integer in [0, 2147483647], got {v!r}")


def unlabeled_value(taxonomy: Taxonomy) -> int:
    return 255 if taxonomy.num_classes <= 254 else 65535


def semantic_dtype(taxonomy: Taxonomy) -> type:
    return np.uint8 if taxonomy.num_classes <= 254 else np.uint16


@lru_cache(maxsize=32)
def _axis_map(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How nearest-neighbour resizing (cv2 INTER_NEAREST: src = floor(dst * n_src / n_dst)) maps one axis.

    Returns per source index: count of destination indices, sum of them, first and last (-1 if none).
    """
    src = np.minimum((np.arange(n_dst, dtype=np.int64) * n_src) // n_dst, n_src - 1)
    count = np.bincount(src, minlength=n_src).astype(np.float64)
    total = np.bincount(src, weights=np.arange(n_dst, dtype=np.float64), minlength=n_src)
    first = np.full(n_src, -1, np.int64)
    last = np.full(n_src, -1, np.int64)
    first[src[::-1]] = np.arange(n_dst)[::-1]
    last[src] = np.arange(n_dst)
    for a in (count, total, first, last):
        a.setflags(write=False)
    return count, total, first, last


@lru_cache(maxsize=16)
def _pixel_weights(h: int, w: int, H: int, W: int) -> np.ndarray | int:
    """Input pixels each network pixel becomes under the nearest upsample (0 if none).

    (h*w,) float64 in general; a plain int when every network pixel covers the same number of
    input pixels (integer scale on both axes, e.g. 240x320 -> 480x640), where an unweighted
    bincount times that int is the same count and about twice as fast.
    """
    rc, _, _, _ = _axis_map(h, H)
    cc, _, _, _ = _axis_map(w, W)
    if rc.min() == rc.max() and cc.min() == cc.max():
        return int(rc[0]) * int(cc[0])
    area = (rc[:, None] * cc[None, :]).ravel()
    area.setflags(write=False)
    return area


def _weighted_counts(key: np.ndarray, weights: np.ndarray | int, minlength: int) -> np.ndarray:
    """float64 ``bincount(key, weights)`` for ``_pixel_weights`` (array or uniform int); exact integer values."""
    if isinstance(weights, int):
        return np.bincount(key, minlength=minlength).astype(np.float64) * weights
    return np.bincount(key, weights=weights, minlength=minlength)


@lru_cache(maxsize=16)
def _pixel_coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(h*w,) intp row and column index of every pixel of a flattened (h, w) map (gathers beat divmod)."""
    ys = np.repeat(np.arange(h, dtype=np.intp), w)
    xs = np.tile(np.arange(w, dtype=np.intp), h)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


def _clipped(a: np.ndarray, hi: int) -> np.ndarray:
    """``a`` clipped to [0, hi] as a new signed integer array (int32 from int8/16/32 and uint8/16, int64 from int64).

    Typed int32 bounds keep int32 maps in int32 (NumPy 2 promotion); other dtypes (uint32/64,
    float, bool) go through int64 first, like the original ``astype(np.int64)``.
    """
    if not (a.dtype.kind == "i" or (a.dtype.kind == "u" and a.dtype.itemsize <= 2)):
        a = a.astype(np.int64)
    return np.clip(a, np.int32(0), np.int32(hi))


def instance_records(
    instance: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    input_hw: tuple[int, int] | None = None,
) -> tuple[Instance, ...]:
    """Instance records from a relabelled instance map.

    instance: (h, w) uint16/int, 0 = none, 1..N contiguous; classes, scores: (N + 1,) per id (entry 0 unused).
    input_hw: (H, W) the map will be nearest-upsampled to (default: its own size); records are exactly
    those of the upsampled map, computed at (h, w) without building it.
    bbox = (x0, y0, x1, y1) exclusive, area in pixels, centroid = (x, y) mean of pixel indices.

    How: the nearest upsample is separable (network row y becomes rc[y] input rows, column x
    becomes cc[x] input columns), so two weighted histograms over the instance pixels only —
    per (id, row) weighted by cc[x] and per (id, column) weighted by rc[y] — give every
    statistic: area = row_hist @ rc, sum of input y = row_hist @ rs, sum of input x = col_hist @ cs, and the
    occupied rows / columns whose first / last input index is the bbox. All sums are of
    integers (< 2**53) in float64, hence exact whatever the summation order. No per-instance
    masks, no full-size arrays, one pass of (id, row) / (id, column) counting.
    """
    n = len(classes) - 1
    if n <= 0:
        return ()
    h, w = instance.shape
    H, W = (h, w) if input_hw is None else (int(input_hw[0]), int(input_hw[1]))
    rc, rs, rfirst, rlast = _axis_map(h, H)
    cc, cs, cfirst, clast = _axis_map(w, W)
    flat = np.ascontiguousarray(instance).ravel()
    idx = np.flatnonzero(
        flat > 0
    )  # instance pixels only (~10 % of a street scene); bool is the fast path
    ids = flat[idx].astype(np.intp)
    grid_y, grid_x = _pixel_coords(h, w)
    ys, xs = grid_y[idx], grid_x[idx]
    same = H == h and W == w  # no upsampling: every weight is 1, plain counts are the same
    row_hist = np.bincount(
        ids * h + ys, weights=None if same else cc[xs], minlength=(n + 1) * h
    ).reshape(n + 1, h)
    col_hist = np.bincount(
        ids * w + xs, weights=None if same else rc[ys], minlength=(n + 1) * w
    ).reshape(n + 1, w)
    area = row_hist @ rc
    sy = row_hist @ rs
    sx = col_hist @ cs
    rows = (row_hist > 0) & (rc > 0)  # a network row with rc == 0 is not in the upsampled map
    cols = (col_hist > 0) & (cc > 0)
    y0 = rfirst[rows.argmax(1)]
    y1 = rlast[h - 1 - rows[:, ::-1].argmax(1)] + 1
    x0 = cfirst[cols.argmax(1)]
    x1 = clast[w - 1 - cols[:, ::-1].argmax(1)] + 1
    out = []
    for i in range(1, n + 1):
        a = int(round(area[i]))
        if a == 0:
            continue
        out.append(
            Instance(
                id=i,
                class_id=int(classes[i]),
                score=float(scores[i]),
                bbox=(int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])),
                area=a,
                centroid=(float(sx[i] / a), float(sy[i] / a)),
            )
        )
    return tuple(out)


def _gather_tables(
    sem_tab: np.ndarray,
    ins_tab: np.ndarray,
    area: np.ndarray,
    key: np.ndarray,
    hw: tuple[int, int],
    taxonomy: Taxonomy,
    cfg: PostprocessConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last decisions on the (k, c) tables, then one gather each through the key map.

    sem_tab / ins_tab: (K + 1, C + 1) class (C = unlabeled while deciding) and instance id per
    (k, c); area: pixels per (k, c); key: (h, w) index ``k * (C + 1) + c``. Decides the stuff area
    filter (per class, like Panoptic-DeepLab's stuff_area), the unlabeled value and the panoptic
    encoding (VOID where unlabeled) -> (semantic, instance, panoptic) maps of shape ``hw``. Shared
    by ``build_result`` and ``result_from_segments`` so both encode a frame the same way."""
    C = taxonomy.num_classes
    if cfg.stuff_area_min > 0:
        total = np.bincount(sem_tab.ravel(), weights=area.ravel(), minlength=C + 1)
        drop = np.zeros(C + 1, bool)
        stuff = np.asarray(taxonomy.stuff_ids, np.int64)
        drop[stuff] = total[stuff] < cfg.stuff_area_min
        if drop.any():
            sem_tab = np.where(drop[sem_tab], C, sem_tab)
    void = sem_tab == C
    pan_tab = (sem_tab * taxonomy.label_divisor + ins_tab).astype(np.int32)
    pan_tab[void] = VOID
    sem_tab[void] = unlabeled_value(taxonomy)
    ins_tab[void] = 0
    h, w = hw
    return (
        sem_tab.astype(semantic_dtype(taxonomy)).ravel().take(key).reshape(h, w),
        ins_tab.astype(np.uint16).ravel().take(key).reshape(h, w),
        pan_tab.ravel().take(key).reshape(h, w),
    )


def build_result(
    semantic: np.ndarray,
    instance: np.ndarray,
    center_score: np.ndarray,
    input_hw: tuple[int, int],
    taxonomy: Taxonomy,
    config: PostprocessConfig | None = None,
    timings: dict[str, float] | None = None,
) -> PanopticResult:
    """One batch item of the network's outputs -> PanopticResult at the input resolution.

    semantic: (h, w) int class ids (network resolution); instance: (h, w) int, 0 or k + 1 for TopK
    centre k; center_score: (K,) float32 score per centre; input_hw: (H, W) of the camera frame.

    Result = exactly what you get by nearest-upsampling the maps to (H, W) first and then: per
    instance, class = majority vote over its thing pixels (all its pixels take that class); thing
    pixels without an instance -> unlabeled; instances under ``min_instance_area`` input pixels ->
    unlabeled; stuff classes under ``stuff_area_min`` input pixels -> unlabeled; instances relabelled
    1..N in TopK (score) order; panoptic = class * label_divisor + id.

    Why it is cheap: every output pixel depends only on its (centre k, class c) pair, so the work
    on pixels is one key map ``k * (C + 1) + c`` at network resolution, one weighted bincount of it
    (weights = input pixels per network pixel, so areas are input-resolution areas), and three
    gathers from (K + 1) x (C + 1) lookup tables that hold all the decisions (vote, filters,
    relabelling, panoptic encoding). Only the three final maps are upsampled (one nearest resize
    each); records come from ``instance_records`` at network resolution.
    """
    cfg = config or PostprocessConfig()
    H, W = int(input_hw[0]), int(input_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"input_hw must be >= (1, 1), got {input_hw}")
    h, w = semantic.shape
    C = taxonomy.num_classes
    K = int(center_score.shape[0])
    # per-pixel work: the (k, c) key, C = "unlabeled" class while processing
    key = _clipped(instance, K) * np.int32(C + 1)
    key += _clipped(semantic, C)
    key = key.astype(np.intp, copy=False).ravel()  # bincount and take index with intp: convert once
    votes = _weighted_counts(key, _pixel_weights(h, w, H, W), (K + 1) * (C + 1)).reshape(
        K + 1, C + 1
    )

    # decisions per centre k (ids 1..K): majority thing class (in input pixels), area over thing pixels
    is_thing = taxonomy.is_thing_lut()  # (C + 1,)
    thing_ids = np.asarray(taxonomy.thing_ids, np.int64)
    tv = votes[:, thing_ids] if thing_ids.size else np.zeros((K + 1, 1))
    area = tv.sum(1)  # only thing pixels belong to an instance
    vote = np.where(tv.max(1) > 0, thing_ids[tv.argmax(1)] if thing_ids.size else -1, -1)
    keep = (area >= max(1, cfg.min_instance_area)) & (vote >= 0)
    keep[0] = False
    kept = np.flatnonzero(keep)  # in TopK order == descending score
    new_id = np.zeros(K + 1, np.int64)
    new_id[kept] = np.arange(1, len(kept) + 1)
    cls_of_new = np.concatenate([[-1], vote[kept]])
    score_of_new = np.concatenate([[0.0], np.asarray(center_score, np.float64)[kept - 1]])
    class_of_k = np.full(K + 1, C, np.int64)  # thing pixels outside kept instances -> unlabeled
    class_of_k[kept] = vote[kept]

    # decisions per (k, c): stuff pixels ignore k; thing pixels take their instance's id and class
    k_eff = np.where(is_thing[None, :], np.arange(K + 1)[:, None], 0)  # (K + 1, C + 1)
    ins_tab = new_id[k_eff]
    sem_tab = np.where(is_thing[None, :], class_of_k[k_eff], np.arange(C + 1)[None, :])
    semantic_small, instance_small, panoptic_small = _gather_tables(
        sem_tab, ins_tab, votes, key, (h, w), taxonomy, cfg
    )
    records = instance_records(instance_small, cls_of_new, score_of_new, (H, W))
    return PanopticResult(
        semantic=labels_to_input(semantic_small, (H, W)),
        instance=labels_to_input(instance_small, (H, W)),
        panoptic=labels_to_input(panoptic_small, (H, W)),
        instances=records,
        timings=dict(timings or {}),
    )


def result_from_segments(
    segments: Segments,
    taxonomy: Taxonomy,
    config: PostprocessConfig | None = None,
    timings: dict[str, float] | None = None,
) -> PanopticResult:
    """A family's decoded ``Segments`` (at the frame's resolution) -> PanopticResult.

    The one host step every family shares (this project's own contract has the equivalent, faster
    ``build_result`` on network-resolution maps). Rules, in order:

    * void: a semantic value < 0 or >= C (HF's -1 "no segment", Ultralytics' background) is
      unlabeled, never class 0; so is an instance whose class is outside 0..C-1;
    * an instance pixel takes its instance's class (``classes[k - 1]``), whatever ``semantic``
      says there; an instance of a stuff class is fused into that class's stuff region;
    * thing instances under ``min_instance_area`` pixels, and thing-class pixels without an
      instance, become unlabeled (as in Panoptic-DeepLab's merge);
    * stuff classes covering fewer than ``stuff_area_min`` pixels become unlabeled;
    * the kept thing instances are renumbered 1..N in the family's order (its score order);
      panoptic = class * label_divisor + id, -1 where unlabeled.

    Vectorised like ``build_result``: one key map ``k * (C + 1) + c``, one bincount and lookup
    tables of (N + 1) x (C + 1) entries holding every decision.
    """
    cfg = config or PostprocessConfig()
    sem = np.asarray(segments.semantic)
    ins = np.asarray(segments.instance)
    if sem.ndim != 2 or sem.shape != ins.shape:
        raise ValueError(
            f"segments: semantic {sem.shape} and instance {ins.shape} must be equal (H, W) maps"
        )
    classes = np.asarray(segments.classes, np.int64).reshape(-1)
    scores = np.asarray(segments.scores, np.float64).reshape(-1)
    if scores.shape != classes.shape:
        raise ValueError(f"segments: {classes.size} classes but {scores.size} scores")
    H, W = sem.shape
    C = taxonomy.num_classes
    N = int(classes.size)
    # void -> C (the "unlabeled" column); instance ids outside 1..N -> 0
    key = np.clip(ins, np.int32(-1), np.int32(N + 1)).astype(np.intp)
    key[(key < 0) | (key > N)] = 0
    key *= C + 1
    sem_c = np.clip(sem, np.int32(-1), np.int32(C)).astype(np.intp)
    sem_c[sem_c < 0] = C
    key += sem_c
    key = key.ravel()
    counts = np.bincount(key, minlength=(N + 1) * (C + 1)).reshape(N + 1, C + 1)
    area = counts.sum(1)

    is_thing = taxonomy.is_thing_lut()  # (C + 1,), False for the unlabeled column
    cls_k = np.concatenate([[C], np.where((classes >= 0) & (classes < C), classes, C)])
    thing_k = is_thing[cls_k]
    keep = thing_k & (area >= max(1, cfg.min_instance_area))
    keep[0] = False
    kept = np.flatnonzero(keep)
    new_id = np.zeros(N + 1, np.int64)
    new_id[kept] = np.arange(1, kept.size + 1)
    # class per (k, c): k = 0 -> the pixel's own class (thing without instance -> unlabeled);
    # k >= 1 -> the instance's class (stuff instances fused; dropped thing instances -> unlabeled)
    row0 = np.where(is_thing, C, np.arange(C + 1))
    row0[C] = C
    cls_row = np.where(thing_k & ~keep, C, cls_k)
    sem_tab = np.empty((N + 1, C + 1), np.int64)
    sem_tab[0] = row0
    sem_tab[1:] = cls_row[1:, None]
    ins_tab = np.zeros((N + 1, C + 1), np.int64)
    ins_tab[1:] = new_id[1:, None]
    semantic_out, instance_out, panoptic_out = _gather_tables(
        sem_tab, ins_tab, counts, key, (H, W), taxonomy, cfg
    )
    cls_of_new = np.concatenate([[-1], cls_k[kept]])
    score_of_new = np.concatenate([[0.0], scores[kept - 1]])
    records = instance_records(instance_out, cls_of_new, score_of_new)
    return PanopticResult(
        semantic=semantic_out,
        instance=instance_out,
        panoptic=panoptic_out,
        instances=records,
        timings=dict(timings or {}),
    )
