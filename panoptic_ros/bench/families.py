"""Decode + host post-processing time of every model family (``panoptic-ros bench --families``).

What is timed per frame is exactly what the Segmenter runs after the backend returns:
``family.to_result(outputs, prepared, 0, PostprocessConfig())``, i.e. the family's decode and the
shared host step (``result_from_segments``; this project's contract and Panoptic-DeepLab use the
equivalent ``build_result`` on head-resolution maps). No model file, no network, no backend: the
raw outputs are synthetic, seeded, with the shapes a real export gives for a 480x640 frame and
the structure that drives the cost (how many queries / detections / centres survive):

* ours: 240x320 label maps (the shipped model's size), 8 classes, 12 of K=32 centres above the
  threshold, Voronoi instances over thing pixels;
* Panoptic-DeepLab raw heads at 240x320, 8 (default taxonomy) and 19 (Cityscapes) classes:
  smooth semantic logits, 12 Gaussian centres, offsets pointing at them (+ noise);
* mask classification, Q=100 queries, C=133 classes (+ "no object"), masks at 1/4 of HF's default
  resize of 480x640 (800x1067 -> 200x267), with 0/5/10/20 queries above the score threshold
  (blob masks, so they survive the overlap filter): Mask2Former (masks via 384x384 as HF does)
  and MaskFormer / DETR-seg (one resize; the two share the path);
* YOLO-seg, a 640x640 export (8400 anchors, 80 classes, 32 prototypes): 5/20/50/100 clusters of
  ~10 overlapping candidates above conf 0.25 each (-> about 6/22/52/108 detections after NMS).

Why synthetic: the cost depends on the output shapes and on how much survives the thresholds,
not on the weights; random-init models would keep nothing (or everything) and real weights cannot
be downloaded here. Each case reports the instances in its result so a reader can see the load.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from panoptic_ros.bench.timing import percentile
from panoptic_ros.core.postprocess import PostprocessConfig
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import Prepared
from panoptic_ros.families.base import ModelFamily, OnnxSignature, TensorInfo

#: the frame every case decodes to
FRAME_HW = (480, 640)
#: the issue's goal for decode + post-processing of one frame on this CPU
GOAL_MS = 5.0


@dataclass(frozen=True)
class Case:
    """One timed configuration: ``build(seed)`` -> (family, raw outputs, prepared)."""

    family: str
    case: str
    build: Callable[[int], tuple[ModelFamily, Mapping[str, np.ndarray], Prepared]]


@dataclass(frozen=True)
class CaseTiming:
    family: str
    case: str
    instances: int
    median_ms: float
    p90_ms: float
    cpu_median_ms: float

    @property
    def meets_goal(self) -> bool:
        """Judged on CPU time: what the step costs on this CPU, whatever else loads it (on a
        shared machine the wall time of the same code varies 2-3x between runs)."""
        return self.cpu_median_ms <= GOAL_MS


def _sig(inputs: list[tuple[str, tuple]], outputs: Mapping[str, np.ndarray], meta=None):
    return OnnxSignature(
        tuple(TensorInfo(n, s, "float32") for n, s in inputs),
        tuple(TensorInfo(k, tuple(v.shape), str(v.dtype)) for k, v in outputs.items()),
        dict(meta or {}),
    )


def _smooth(rng: np.random.Generator, channels: int, hw: tuple[int, int], cell: int = 16):
    """(channels, h, w) float32 smooth noise: coarse normal noise, bilinearly upsampled."""
    h, w = hw
    coarse = rng.normal(0, 1, (max(h // cell, 2), max(w // cell, 2), channels)).astype(np.float32)
    fine = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(fine.reshape(h, w, channels).transpose(2, 0, 1))


def _centres(rng: np.random.Generator, n: int, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    return np.stack([rng.uniform(8, h - 8, n), rng.uniform(8, w - 8, n)], 1).astype(np.float32)


def _nearest(centres: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) index of the nearest centre."""
    ys, xs = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float32)
    d = (ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2
    return d.argmin(0)


# ---------------------------------------------------------------------------------------------
# ours: graph outputs are label maps at network resolution
# ---------------------------------------------------------------------------------------------
def build_ours(seed: int, net_hw: tuple[int, int] = (240, 320), top_k: int = 32, alive: int = 12):
    from panoptic_ros.families.ours import OursFamily

    rng = np.random.default_rng(seed)
    tax = Taxonomy.default()
    semantic = _smooth(rng, tax.num_classes, net_hw).argmax(0).astype(np.int32)
    thing = tax.is_thing_lut()[semantic]
    instance = np.where(thing, _nearest(_centres(rng, alive, net_hw), net_hw) + 1, 0)
    scores = np.sort(rng.uniform(0.0, 0.09, top_k)).astype(np.float32)[::-1].copy()
    scores[:alive] = np.sort(rng.uniform(0.2, 0.95, alive))[::-1]
    outs = {
        "semantic": semantic[None],
        "instance": instance.astype(np.int32)[None],
        "center_score": scores[None],
    }
    sig = _sig([("image", (1, 3, *net_hw)), ("center_threshold", (1,))], outs)
    return OursFamily(tax, sig), outs, Prepared({}, [FRAME_HW], [])


# ---------------------------------------------------------------------------------------------
# Panoptic-DeepLab raw heads
# ---------------------------------------------------------------------------------------------
def _taxonomy(num_classes: int) -> Taxonomy:
    if num_classes == Taxonomy.default().num_classes:
        return Taxonomy.default()
    from panoptic_ros.core.taxonomy_sources import load_preset

    tax = load_preset("cityscapes.yaml")[0]
    if tax.num_classes != num_classes:
        raise ValueError(f"no {num_classes}-class taxonomy for the bench")
    return tax


def build_deeplab(seed: int, num_classes: int, head_hw: tuple[int, int] = (240, 320), n: int = 12):
    from panoptic_ros.families.panoptic_deeplab import PanopticDeepLabFamily

    rng = np.random.default_rng(seed)
    tax = _taxonomy(num_classes)
    logits = 3.0 * _smooth(rng, num_classes, head_hw)
    centres = _centres(rng, n, head_hw)
    ys, xs = np.mgrid[0 : head_hw[0], 0 : head_hw[1]].astype(np.float32)
    heat = 0.02 * rng.random(head_hw, dtype=np.float32)
    for (cy, cx), peak in zip(centres, rng.uniform(0.3, 0.95, n)):
        heat = np.maximum(heat, peak * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * 8.0**2)))
    near = centres[_nearest(centres, head_hw)]  # (h, w, 2)
    offset = np.stack([near[..., 0] - ys, near[..., 1] - xs]) + rng.normal(0, 1.5, (2, *head_hw))
    outs = {
        "semantic_logits": logits[None].astype(np.float32),
        "center_heatmap": heat[None, None].astype(np.float32),
        "center_offset": offset[None].astype(np.float32),
    }
    sig = _sig([("image", (1, 3, head_hw[0] * 4, head_hw[1] * 4))], outs)
    return PanopticDeepLabFamily(tax, sig), outs, Prepared({}, [FRAME_HW], [])


# ---------------------------------------------------------------------------------------------
# mask classification (HF Mask2Former / MaskFormer / DETR-seg)
# ---------------------------------------------------------------------------------------------
def build_mask_classification(
    seed: int, kept: int, mask2former: bool, num_queries: int = 100, num_classes: int = 133
):
    from panoptic_ros.families import mask_classification as mc

    rng = np.random.default_rng(seed)
    from panoptic_ros.core.taxonomy_sources import load_preset

    tax = load_preset("coco_panoptic.yaml")[0]  # 133 classes: 80 things, 53 stuff (fused)
    if tax.num_classes != num_classes:
        raise ValueError(f"no {num_classes}-class taxonomy for the bench")
    card = {"config": {"model_type": "mask2former" if mask2former else "maskformer"}}
    probe = _sig(
        [(mc.INPUT_NAME, (1, 3, "height", "width"))],
        {
            "class_queries_logits": np.zeros((1, 1, num_classes + 1), np.float32),
            "masks_queries_logits": np.zeros((1, 1, 1, 1), np.float32),
        },
    )
    net_hw = mc.MaskClassificationFamily(tax, probe, card).network_size(FRAME_HW)
    mask_hw = (net_hw[0] // 4, net_hw[1] // 4)
    logits = rng.normal(0, 1, (num_queries, num_classes + 1)).astype(np.float32)
    logits[:, -1] += 6.0  # most queries say "no object"
    winners = rng.choice(num_queries, size=min(kept, num_queries), replace=False)
    logits[winners, rng.integers(0, num_classes, len(winners))] += 12.0
    masks = 2.0 * _smooth(rng, num_queries, mask_hw) - 4.0  # background: mostly below 0.5
    ys, xs = np.mgrid[0 : mask_hw[0], 0 : mask_hw[1]].astype(np.float32)
    for q, (cy, cx) in zip(winners, _centres(rng, len(winners), mask_hw)):
        sy, sx = rng.uniform(0.05, 0.2, 2) * np.array(mask_hw)
        blob = np.exp(-(((ys - cy) / sy) ** 2) - ((xs - cx) / sx) ** 2)
        masks[q] += 12.0 * blob
    outs = {
        "class_queries_logits": logits[None],
        "masks_queries_logits": masks[None].astype(np.float32),
    }
    sig = _sig([(mc.INPUT_NAME, (1, 3, "height", "width"))], outs)
    fam = mc.MaskClassificationFamily(tax, sig, card)
    return fam, outs, Prepared({}, [FRAME_HW], [(net_hw, net_hw)])


# ---------------------------------------------------------------------------------------------
# Ultralytics YOLO-seg
# ---------------------------------------------------------------------------------------------
def yolo_raw_outputs(
    input_hw: tuple[int, int] = (640, 640),
    nc: int = 80,
    nm: int = 32,
    objects: int = 20,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Raw-head outputs shaped like a 640x640 export (8400 anchors) with ``objects`` clusters
    of overlapping candidate boxes above conf 0.25 (about 10 each, as a trained model gives), the
    rest below it, and smooth prototypes (so masks are blobs, not speckle)."""
    from panoptic_ros.families.yolo_seg import OUTPUT_DETS, OUTPUT_PROTOS

    rng = np.random.default_rng(seed)
    h, w = input_hw
    n = sum((h // s) * (w // s) for s in (8, 16, 32))
    out0 = np.zeros((1, 4 + nc + nm, n), np.float32)
    out0[0, 0] = rng.uniform(0, w, n)
    out0[0, 1] = rng.uniform(0, h, n)
    out0[0, 2:4] = rng.uniform(8, 64, (2, n))
    out0[0, 4 : 4 + nc] = rng.uniform(0, 0.2, (nc, n))
    out0[0, 4 + nc :] = rng.normal(0, 1, (nm, n))
    per = 10
    idx = rng.choice(n, objects * per, replace=False)
    for o in range(objects):
        cx, cy, bw, bh = rng.uniform(64, w - 64), rng.uniform(64, h - 64), *rng.uniform(40, 200, 2)
        cls = rng.integers(nc)
        sel = idx[o * per : (o + 1) * per]
        out0[0, 0, sel] = cx + rng.normal(0, 3, per)
        out0[0, 1, sel] = cy + rng.normal(0, 3, per)
        out0[0, 2, sel] = bw + rng.normal(0, 3, per)
        out0[0, 3, sel] = bh + rng.normal(0, 3, per)
        out0[0, 4 + cls, sel] = rng.uniform(0.3, 0.95, per)
    # prototypes are smooth maps in a trained model: low-resolution noise, upsampled
    coarse = rng.normal(0, 1, (h // 32, w // 32, nm)).astype(np.float32)
    fine = cv2.resize(coarse, (w // 4, h // 4), interpolation=cv2.INTER_LINEAR)
    protos = np.ascontiguousarray(fine.transpose(2, 0, 1))[None]
    return {OUTPUT_DETS: out0, OUTPUT_PROTOS: protos}


def build_yolo(seed: int, objects: int, input_hw: tuple[int, int] = (640, 640), nc: int = 80):
    from panoptic_ros.core.taxonomy_sources import build_taxonomy
    from panoptic_ros.families import yolo_seg as ys

    tax = build_taxonomy([f"c{i}" for i in range(nc)])  # Ultralytics classes: all things
    outs = yolo_raw_outputs(input_hw, nc, objects=objects, seed=seed)
    sig = _sig([(ys.INPUT_NAME, (1, 3, *input_hw))], outs, {"task": "segment"})
    fam = ys.YoloSegFamily(tax, sig)
    return fam, outs, Prepared({}, [FRAME_HW], [ys.letterbox_params(FRAME_HW, input_hw)])


# ---------------------------------------------------------------------------------------------
def cases() -> list[Case]:
    """Every family / case of the table, in order."""
    out = [Case("ours", "240x320 maps, 8 cls", build_ours)]
    for c in (8, 19):
        out.append(
            Case("panoptic_deeplab", f"240x320 heads, {c} cls", lambda s, c=c: build_deeplab(s, c))
        )
    for m2f, name in ((True, "mask2former"), (False, "maskformer/detr")):
        for k in (0, 5, 10, 20):
            out.append(
                Case(
                    "mask_classification",
                    f"{name} Q=100 C=133 kept={k}",
                    lambda s, k=k, m=m2f: build_mask_classification(s, k, m),
                )
            )
    for o in (5, 20, 50, 100):
        out.append(
            Case("yolo_seg", f"8400 anchors 80 cls, {o} objects", lambda s, o=o: build_yolo(s, o))
        )
    return out


def time_case(case: Case, frames: int, warmup: int = 2, seed: int = 0) -> CaseTiming:
    """Median / p90 wall ms and median CPU ms (the whole process, so OpenCV's worker threads
    count: robust to other jobs on a shared machine) of ``to_result`` over ``frames`` timed
    calls on one seeded set of outputs."""
    fam, outs, prepared = case.build(seed)
    config = PostprocessConfig()
    result = None
    for _ in range(warmup):
        result = fam.to_result(outs, prepared, 0, config)
    wall, cpu = [], []
    for _ in range(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fam.to_result(outs, prepared, 0, config)
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - t0) * 1e3)
    if result.semantic.shape != FRAME_HW:
        raise AssertionError(f"{case.family} {case.case}: result is {result.semantic.shape}")
    return CaseTiming(
        case.family,
        case.case,
        len(result.instances),
        percentile(wall, 50),
        percentile(wall, 90),
        percentile(cpu, 50),
    )


def run_all(frames: int, warmup: int = 2, only: Any = None) -> list[CaseTiming]:
    """Every case (or those whose family is in ``only``)."""
    return [time_case(c, frames, warmup) for c in cases() if not only or c.family in only]
