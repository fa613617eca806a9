"""Panoptic-DeepLab raw heads: centre NMS + grouping on the host, with detectron2's conventions.

Graph (names as detectron2 and ``panoptic-ros export --raw`` write them; a card's ``outputs``
mapping may rename them):

    <image input> -> semantic_logits [B,C,h,w], center_heatmap [B,1,h,w], center_offset [B,2,h,w]

``center_offset`` is (offset_y, offset_x) in head pixels; the centre a pixel votes for is its own
(y, x) plus the offset. Host steps (detectron2 projects/Panoptic-DeepLab post_processing.py):

1. semantic = argmax over classes;
2. centres: heatmap values <= ``center_threshold`` become -1, a pixel survives when it equals the
   ``nms_kernel`` x ``nms_kernel`` max-pool of that map, and with ``top_k`` only values strictly
   above the k-th largest (clamped at 0) are kept;
3. every thing-class pixel joins the centre nearest to pixel + offset (first centre on ties);
4. each instance takes the majority class of its thing pixels (smallest class on ties), stuff
   classes below ``stuff_area_min`` pixels become unlabeled, thing pixels without a centre are
   unlabeled (``postprocess.build_result``, the same step this project's contract uses).

Differences from detectron2, on purpose: detectron2 bilinearly resizes the heads to the output
size first and then groups; here the grouping runs at head resolution and the label maps are
nearest-upsampled (as for the project's own model: cheap at any frame size); instance ids are
1..N in descending centre score (detectron2 numbers them per class); ``stuff_area_min`` is the
node's parameter (default 64; detectron2's 2048 is for 1024x2048 Cityscapes frames). Defaults of
the centre step are detectron2's: threshold 0.1, nms kernel 7, top k 200.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from panoptic_ros.families.base import (
    CentreMapsFamily,
    OnnxSignature,
    ParamSpec,
    Prepared,
)
from panoptic_ros.families.image_input import ImageInput, image_input

HEADS = ("semantic_logits", "center_heatmap", "center_offset")


def head_names(card: Mapping[str, Any]) -> dict[str, str]:
    """Head role -> graph output name (card ``outputs`` overrides the detectron2 names)."""
    names = {h: h for h in HEADS}
    names.update({k: str(v) for k, v in (card.get("outputs") or {}).items() if k in names})
    return names


def find_centers(
    heat: np.ndarray, threshold: float, nms_kernel: int, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) float32 heatmap -> (K, 2) int (y, x) centres in row-major order and their scores.

    detectron2's find_instance_center: threshold to -1, max-pool NMS (cv2.dilate is the same max
    filter, its border ignored like max_pool2d's -inf padding), optional top-k."""
    h = np.where(heat > threshold, heat, np.float32(-1.0)).astype(np.float32, copy=False)
    pooled = cv2.dilate(h, np.ones((nms_kernel, nms_kernel), np.uint8))
    h = np.where(h == pooled, h, np.float32(-1.0))
    keep = h > 0
    if top_k > 0:
        # the k-th largest of the whole map is -1 (clamped to 0) unless >= k centres are positive,
        # so the k-th largest of the positive values is the same threshold (and np.partition is
        # slow on the map's many equal -1 values)
        pos = h[keep]
        if pos.size >= top_k:
            kth = float(np.partition(pos, pos.size - top_k)[pos.size - top_k])
            keep = h > max(kth, 0.0)
    ys, xs = np.nonzero(keep)
    return np.stack([ys, xs], 1), h[ys, xs]


def group_pixels(
    centers: np.ndarray, offset: np.ndarray, mask: np.ndarray, chunk: int = 1 << 16
) -> np.ndarray:
    """Index (0..K-1) of the centre nearest to pixel + offset, for the pixels in ``mask``.

    centers: (K, 2) (y, x); offset: (2, h, w) (dy, dx). Returns (M,) int for mask's pixels in
    row-major order. Squared float32 distances (argmin as detectron2's norm, first on ties)."""
    ys, xs = np.nonzero(mask)
    cy = centers[:, 0].astype(np.float32)[None, :]
    cx = centers[:, 1].astype(np.float32)[None, :]
    out = np.empty(ys.size, np.int64)
    for s in range(0, ys.size, chunk):
        y, x = ys[s : s + chunk], xs[s : s + chunk]
        py = (y.astype(np.float32) + offset[0, y, x])[:, None]
        px = (x.astype(np.float32) + offset[1, y, x])[:, None]
        d = (cy - py) ** 2 + (cx - px) ** 2
        out[s : s + chunk] = d.argmin(1)
    return out


class PanopticDeepLabFamily(CentreMapsFamily):
    name = "panoptic_deeplab"
    PARAMETERS = (
        ParamSpec(
            "center_threshold",
            0.1,
            1e-6,
            1.0,
            "Centre heatmap values at or below this are not centres (detectron2 CENTER_THRESHOLD).",
        ),
        ParamSpec(
            "nms_kernel",
            7,
            1,
            255,
            "Centre NMS max-pool window in head pixels, odd (detectron2 NMS_KERNEL).",
        ),
        ParamSpec(
            "top_k",
            200,
            0,
            10000,
            "Centres kept per frame, 0 = all (detectron2 TOP_K_INSTANCE).",
        ),
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._input = ImageInput(self.signature, self.card)
        self._heads = head_names(self.card)

    def update_config(self, **changes: float | int) -> dict[str, float | int]:
        k = changes.get("nms_kernel")
        if k is not None and isinstance(k, (int, float)) and int(k) % 2 != 1:
            raise ValueError(f"nms_kernel must be odd, got {k!r}")
        return super().update_config(**changes)

    @classmethod
    def violations(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> list[str]:
        out = []
        names = head_names(card)
        if image_input(signature, card) is None:
            out.append("no single 4-D float image input (a card's 'input' names it)")
        want = {"semantic_logits": None, "center_heatmap": 1, "center_offset": 2}
        absent = [names[r] for r in want if signature.output(names[r]) is None]
        if absent:
            out.append("output " + ", ".join(f"'{n}'" for n in absent) + " missing")
        for role, ch in want.items():
            t = signature.output(names[role])
            if t is None:
                continue
            if len(t.shape) != 4:
                out.append(f"output {names[role]!r} must be [B,C,h,w], has {list(t.shape)}")
            elif ch is not None and t.shape[1] != ch:
                out.append(f"output {names[role]!r} must have {ch} channel(s), has {t.shape[1]}")
        return out

    @classmethod
    def num_classes(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> int | None:
        t = signature.output(head_names(card)["semantic_logits"])
        c = t.shape[1] if t is not None and len(t.shape) == 4 else None
        return c if isinstance(c, int) and c > 0 else None

    def prepare(self, images: Sequence[np.ndarray], batch: int) -> Prepared:
        x = self._input(images, batch)
        return Prepared({self._input.name: x}, [im.shape[:2] for im in images], [])

    def instance_maps(
        self, outputs: Mapping[str, np.ndarray], index: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head-resolution semantic (h, w), instance (h, w: 0 or k + 1 for the k-th centre by
        descending score) and centre scores (K,)."""
        cfg = self.config
        logits = outputs[self._heads["semantic_logits"]][index]
        heat = np.asarray(outputs[self._heads["center_heatmap"]][index, 0], np.float32)
        offset = np.asarray(outputs[self._heads["center_offset"]][index], np.float32)
        semantic = logits.argmax(0).astype(np.int32)
        centers, scores = find_centers(
            heat, float(cfg["center_threshold"]), int(cfg["nms_kernel"]), int(cfg["top_k"])
        )
        instance = np.zeros(semantic.shape, np.int32)
        if len(centers):
            order = np.argsort(-scores, kind="stable")  # ids in descending score
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            thing = self.taxonomy.is_thing_lut()[np.minimum(semantic, self.taxonomy.num_classes)]
            nearest = group_pixels(centers, offset, thing)
            instance[thing] = rank[nearest] + 1
            scores = scores[order]
        return semantic, instance, scores.astype(np.float32)
