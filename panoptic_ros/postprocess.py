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

import numpy as np

from .preprocess import labels_to_input
from .taxonomy import Taxonomy
from .types import VOID, Instance, PanopticResult


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
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t) or not 0.0 < float(t) <= 1.0:
        raise ValueError(f"center_threshold must be a number in (0, 1], got {t!r}")
    for name in ("stuff_area_min", "min_instance_area"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 or v > 2**31 - 1:
            raise ValueError(f"{name} must be an integer in [0, 2147483647], got {v!r}")


def unlabeled_value(taxonomy: Taxonomy) -> int:
    return 255 if taxonomy.num_classes <= 254 else 65535


def semantic_dtype(taxonomy: Taxonomy) -> type:
    return np.uint8 if taxonomy.num_classes <= 254 else np.uint16


def majority_vote(semantic: np.ndarray, instance: np.ndarray, num_instances: int, thing_ids) -> np.ndarray:
    """Most frequent thing class of each instance.

    semantic: (H, W) int class ids; instance: (H, W) int 0..num_instances; thing_ids: iterable of int.
    Returns (num_instances + 1,) int64: class per instance id (entry 0 unused, -1 where the instance
    has no thing-class pixel). Ties go to the smaller class id.
    """
    thing_ids = np.asarray(sorted(thing_ids), np.int64)
    n = num_instances + 1
    out = np.full(n, -1, np.int64)
    if thing_ids.size == 0 or num_instances == 0:
        return out
    C = int(max(int(semantic.max(initial=0)), int(thing_ids.max()))) + 1
    m = instance > 0
    counts = np.bincount(instance[m].astype(np.int64) * C + semantic[m].astype(np.int64), minlength=n * C)
    counts = counts.reshape(n, C)[:, thing_ids]
    best = counts.argmax(1)
    has = counts.max(1) > 0
    out[has] = thing_ids[best[has]]
    out[0] = -1
    return out


def instance_records(instance: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> tuple[Instance, ...]:
    """Instance records from a relabelled instance map.

    instance: (H, W) uint16/int, 0 = none, 1..N contiguous; classes, scores: (N + 1,) per id (entry 0 unused).
    bbox = (x0, y0, x1, y1) exclusive, area in pixels, centroid = (x, y) mean of pixel centres
    (pixel (x, y) has its centre at (x, y) in these coordinates; mean of indices).
    """
    n = len(classes) - 1
    if n <= 0:
        return ()
    H, W = instance.shape
    inst = instance.astype(np.int64, copy=False)
    area = np.bincount(inst.ravel(), minlength=n + 1)
    rows = np.bincount((inst * H + np.arange(H)[:, None]).ravel(), minlength=(n + 1) * H).reshape(n + 1, H) > 0
    cols = np.bincount((inst * W + np.arange(W)[None, :]).ravel(), minlength=(n + 1) * W).reshape(n + 1, W) > 0
    sy = np.bincount(inst.ravel(), weights=np.repeat(np.arange(H, dtype=np.float64), W), minlength=n + 1)
    sx = np.bincount(inst.ravel(), weights=np.tile(np.arange(W, dtype=np.float64), H), minlength=n + 1)
    y0 = rows.argmax(1)
    y1 = H - rows[:, ::-1].argmax(1)
    x0 = cols.argmax(1)
    x1 = W - cols[:, ::-1].argmax(1)
    out = []
    for i in range(1, n + 1):
        a = int(area[i])
        if a == 0:
            continue
        out.append(Instance(id=i, class_id=int(classes[i]), score=float(scores[i]),
                            bbox=(int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])), area=a,
                            centroid=(float(sx[i] / a), float(sy[i] / a))))
    return tuple(out)


def build_result(semantic: np.ndarray, instance: np.ndarray, center_score: np.ndarray, input_hw: tuple[int, int],
                 taxonomy: Taxonomy, config: PostprocessConfig | None = None,
                 timings: dict[str, float] | None = None) -> PanopticResult:
    """One batch item of the network's outputs -> PanopticResult at the input resolution.

    semantic: (h, w) int class ids (network resolution); instance: (h, w) int, 0 or k + 1 for TopK
    centre k; center_score: (K,) float32 score per centre; input_hw: (H, W) of the camera frame.

    Steps: nearest upsample to (H, W); per instance, class = majority vote over its thing pixels
    (all its pixels take that class); thing pixels without an instance -> unlabeled; instances
    under ``min_instance_area`` -> unlabeled; stuff classes under ``stuff_area_min`` -> unlabeled;
    instances relabelled 1..N in TopK (score) order; panoptic = class * label_divisor + id.
    """
    cfg = config or PostprocessConfig()
    H, W = int(input_hw[0]), int(input_hw[1])
    unl = unlabeled_value(taxonomy)
    C = taxonomy.num_classes
    K = int(center_score.shape[0])
    sem = labels_to_input(np.asarray(semantic, np.int32) if semantic.dtype != np.int32 else semantic, (H, W))
    ins = labels_to_input(np.asarray(instance, np.int32) if instance.dtype != np.int32 else instance, (H, W))
    sem = np.clip(sem, 0, C)  # C acts as "unlabeled" index during processing
    ins = np.clip(ins, 0, K)
    thing_lut = taxonomy.is_thing_lut()  # (C + 1,)
    is_thing_px = thing_lut[sem]
    ins = np.where(is_thing_px, ins, 0)

    # majority vote class per centre k (ids 1..K)
    vote = majority_vote(sem, ins, K, taxonomy.thing_ids)
    area = np.bincount(ins.ravel(), minlength=K + 1)
    keep = (area >= max(1, cfg.min_instance_area)) & (vote >= 0)
    keep[0] = False
    kept = np.flatnonzero(keep)  # in TopK order == descending score
    new_id = np.zeros(K + 1, np.int64)
    new_id[kept] = np.arange(1, len(kept) + 1)
    cls_of_new = np.concatenate([[-1], vote[kept]])
    score_of_new = np.concatenate([[0.0], np.asarray(center_score, np.float64)[kept - 1]])

    inst_out = new_id[ins]
    # class map: instances take their voted class; thing pixels not in a kept instance -> unlabeled
    class_lut = np.full(K + 1, C, np.int64)
    class_lut[kept] = vote[kept]
    sem_out = np.where(is_thing_px, class_lut[ins], sem)
    # stuff area filter (per class, like Panoptic-DeepLab's stuff_area)
    if cfg.stuff_area_min > 0:
        counts = np.bincount(sem_out.ravel(), minlength=C + 1)
        drop = np.zeros(C + 1, bool)
        stuff = np.asarray(taxonomy.stuff_ids, np.int64)
        drop[stuff] = counts[stuff] < cfg.stuff_area_min
        if drop.any():
            sem_out = np.where(drop[sem_out], C, sem_out)
    sem_lut = np.arange(C + 1, dtype=np.int64)
    sem_lut[C] = unl
    semantic_final = sem_lut[sem_out].astype(semantic_dtype(taxonomy))
    instance_final = inst_out.astype(np.uint16)
    panoptic = sem_out.astype(np.int32) * np.int32(taxonomy.label_divisor) + inst_out.astype(np.int32)
    panoptic[sem_out == C] = VOID
    records = instance_records(instance_final, cls_of_new, score_of_new)
    return PanopticResult(semantic=semantic_final, instance=instance_final, panoptic=panoptic, instances=records,
                          timings=dict(timings or {}))


def colorize(semantic: np.ndarray, instance: np.ndarray, taxonomy: Taxonomy, image: np.ndarray | None = None,
             alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 overlay: class colour, instances shaded per id, blended over ``image`` if given."""
    lut = taxonomy.color_lut()
    col = lut[np.minimum(semantic, lut.shape[0] - 1)].astype(np.float32)
    m = instance > 0
    if m.any():
        shade = (0.55 + 0.45 * ((instance.astype(np.int64) * 0.618034) % 1.0)).astype(np.float32)
        col[m] *= shade[m, None]
    if image is not None:
        col = (1 - alpha) * image.astype(np.float32) + alpha * col
    return np.clip(col, 0, 255).astype(np.uint8)
