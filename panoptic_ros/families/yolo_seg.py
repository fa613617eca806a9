"""Ultralytics YOLO-seg (YOLOv8 / YOLO11 / YOLO26 ONNX exports) as a model family.

What the export looks like (``model.export(format="onnx")`` / ``yolo export ... format=onnx``):
``images`` float32 (1, 3, H, W) RGB in 0..1, letterboxed -> ``output0`` and ``output1``
(prototypes, (1, nm, H/4, W/4), nm = 32). ``output0`` comes in two layouts:

* raw head (YOLOv8, YOLO11, and YOLO26 exported with the default ``nms=None`` by ultralytics 8.4):
  (1, 4 + nc + nm, N) = centre-xywh box, per-class scores (already sigmoid), mask coefficients,
  one column per anchor (N = 8400 at 640x640). Needs confidence filter + class-aware NMS.
* end-to-end (YOLO26 exported with ``nms=False``; metadata ``end2end: 'True'``):
  (1, K, 6 + nm) = xyxy box, score, class index, mask coefficients, K = max_det (300) rows
  sorted by score; NMS-free, Ultralytics only filters by confidence and max_det.

The ONNX ``metadata_props`` carry ``task`` ('segment'), ``names`` (a Python dict repr, parsed
with ``ast.literal_eval``), ``imgsz`` ('[640, 640]'), ``stride`` and ``end2end``.

Every step mirrors Ultralytics' own predict path (ultralytics 8.4.190, SegmentationPredictor with
``retina_masks=False``), so the result is what ``model.predict`` gives on the same ONNX:
LetterBox (auto=False, centred, pad 114, cv2.INTER_LINEAR, Python ``round``) -> /255 ->
``non_max_suppression`` (best class per anchor, class-aware via a 7680 px offset per class, greedy
NMS as ultralytics' TorchNMS, max_det) -> ``process_mask(upsample=True)`` (coefficients @
prototypes, bilinear upsample of the logits to the network input, > 0, crop to the box) -> drop
detections whose mask is empty -> ``scale_boxes`` for the boxes and ``scale_masks`` (unpad, bilinear
to the frame, > 0.5: what ``Results.plot`` draws) for the masks. Sampling positions and weights
are PyTorch's; sums are float32 and may differ from PyTorch's kernel in the last bit (~1e-6), so a
mask pixel can only differ where a logit lies within that of 0 (none did in the parity tests).

Panoptic result (things only): background is unlabeled (semantic -1); each kept detection is an
instance. Where masks overlap, the pixel goes to the detection with the higher score (ties: the one
Ultralytics lists first), so a Results.plot user sees the most confident object on top. Detections
left with no pixel are dropped and the rest renumbered in score order.

Pure numpy + cv2 at run time; torch / ultralytics are only used by the parity tests.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from panoptic_ros.core.taxonomy import TaxonomyError
from panoptic_ros.core.taxonomy_sources import parse_names
from panoptic_ros.families.base import (
    ModelFamily,
    OnnxSignature,
    ParamSpec,
    Prepared,
    Segments,
)

# Ultralytics constants (utils/nms.py, data/augment.py).
MAX_WH = 7680  # per-class box offset that makes one NMS pass class-aware
MAX_NMS = 30000  # boxes kept (by score) before NMS
PAD_VALUE = 114  # LetterBox padding_value
DEFAULT_IMGSZ = (640, 640)

INPUT_NAME = "images"
OUTPUT_DETS = "output0"
OUTPUT_PROTOS = "output1"


class YoloSegError(ValueError):
    """The model or its outputs do not fit the Ultralytics YOLO-seg export layout."""


# ------------------------------------------------------------------------------------------------
# Letterbox (ultralytics.data.augment.LetterBox with auto=False, scale_fill=False, scaleup=True,
# center=True)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Letterbox:
    """How one frame was placed into the network input.

    orig_hw: the frame's (H, W); input_hw: the network's (H, W); new_wh: the resized frame's
    (W, H) before padding; top/left: the padding before it (bottom/right follow)."""

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    new_wh: tuple[int, int]
    top: int
    bottom: int
    left: int
    right: int


def letterbox_params(orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    """LetterBox.get_params, with the same Python float arithmetic and banker's ``round``."""
    h, w = orig_hw
    r = min(input_hw[0] / h, input_hw[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (input_hw[1] - new_w) / 2, (input_hw[0] - new_h) / 2
    return Letterbox(
        (h, w),
        (int(input_hw[0]), int(input_hw[1])),
        (new_w, new_h),
        round(dh - 0.1),
        round(dh + 0.1),
        round(dw - 0.1),
        round(dw + 0.1),
    )


def letterbox(image: np.ndarray, lb: Letterbox) -> np.ndarray:
    """LetterBox.apply_image: cv2 INTER_LINEAR resize (only when the size changes), then a
    constant 114 border. Per-channel, so RGB in gives the same as Ultralytics' BGR-then-flip."""
    if (image.shape[1], image.shape[0]) != lb.new_wh:
        image = cv2.resize(image, lb.new_wh, interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(
        image, lb.top, lb.bottom, lb.left, lb.right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )


# ------------------------------------------------------------------------------------------------
# Bilinear resampling as torch.nn.functional.interpolate(mode="bilinear", align_corners=False)
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _axis(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's source indices and weights along one axis (float32 arithmetic as ATen's
    area_pixel_compute_source_index / guard_index_and_lambda): (i0, i1, w0, w1)."""
    scale = np.float32(n_src) / np.float32(n_dst)
    real = np.maximum(
        scale * (np.arange(n_dst, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
        np.float32(0),
    )
    i0 = np.minimum(np.floor(real).astype(np.int64), n_src - 1)
    w1 = np.clip(real - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < n_src - 1)
    w0 = (np.float32(1) - w1).astype(np.float32)
    for a in (i0, i1, w0, w1):
        a.flags.writeable = False
    return i0, i1, w0, w1


def _bilinear_window(
    src: np.ndarray,
    src_y0: int,
    src_x0: int,
    n_src: tuple[int, int],
    n_dst: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> np.ndarray:
    """Output pixels rows[0]:rows[1] x cols[0]:cols[1] of resizing an (n_src) image to (n_dst),
    where ``src`` holds the source window starting at (src_y0, src_x0) and the source is zero
    outside it. ATen's sampling and order of operations, (x00*w0 + x01*w1)*h0 + (x10*w0 +
    x11*w1)*h1 in float32 (ATen's vectorised kernel may fuse multiply-adds: last-bit differences)."""
    yi0, yi1, yw0, yw1 = _axis(n_src[0], n_dst[0])
    xi0, xi1, xw0, xw1 = _axis(n_src[1], n_dst[1])
    r = slice(*rows)
    c = slice(*cols)
    sh, sw = src.shape
    y0, y1 = yi0[r] - src_y0, yi1[r] - src_y0
    x0, x1 = xi0[c] - src_x0, xi1[c] - src_x0
    if y0[0] < 0 or y1[-1] >= sh or x0[0] < 0 or x1[-1] >= sw:
        # Some taps fall outside the window: pad it with one zero row/col on each side and
        # send those taps there (indices are non-decreasing, so checking the ends suffices).
        pad = np.zeros((sh + 2, sw + 2), np.float32)
        pad[1:-1, 1:-1] = src
        src = pad
        y0, y1 = np.clip(y0 + 1, 0, sh + 1), np.clip(y1 + 1, 0, sh + 1)
        x0, x1 = np.clip(x0 + 1, 0, sw + 1), np.clip(x1 + 1, 0, sw + 1)
    lo, hi = int(y0[0]), int(y1[-1]) + 1
    band = src[lo:hi]
    t = band[:, x0] * xw0[c] + band[:, x1] * xw1[c]  # horizontal pass on the needed source rows
    return t[y0 - lo] * yw0[r, None] + t[y1 - lo] * yw1[r, None]


def _dst_range(i0: np.ndarray, i1: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """The contiguous output range whose source taps (i0 or i1, both non-decreasing) touch
    source pixels lo..hi-1."""
    start = int(np.searchsorted(i1, lo, side="left"))
    stop = int(np.searchsorted(i0, hi - 1, side="right"))
    return start, max(start, stop)


# ------------------------------------------------------------------------------------------------
# Detections
# ------------------------------------------------------------------------------------------------
@dataclass
class YoloDetections:
    """Ultralytics' per-image result in frame coordinates (what ``Results`` holds after
    ``scale_boxes`` / ``scale_masks``), in Ultralytics' order (descending score).

    boxes: (N, 4) float32 xyxy; scores: (N,) float32; classes: (N,) int64;
    masks: per detection (y0, x0, bool array) = its binary mask in the frame, zero outside the
    window that starts at (y0, x0)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: list[tuple[int, int, np.ndarray]]

    def full_masks(self, hw: tuple[int, int]) -> np.ndarray:
        """(N, H, W) bool masks (for tests and visualisation; decode never builds these)."""
        out = np.zeros((len(self.masks), *hw), bool)
        for k, (y0, x0, m) in enumerate(self.masks):
            out[k, y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        return out


def nms_greedy(
    boxes: np.ndarray, scores: np.ndarray, iou_thres: float, max_keep: int | None = None
) -> np.ndarray:
    """ultralytics.utils.nms.TorchNMS.nms (which matches torchvision.ops.nms) in numpy float32:
    indices kept, in descending score order. Stable sort for equal scores. Stops after
    ``max_keep`` boxes: greedy NMS never revisits a kept box, so the first max_keep are the
    ones Ultralytics keeps when it truncates the full result to max_det."""
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    # Sorted copies: each kept box is compared with the contiguous tail after it (no gathers).
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, c]) for c in range(4))
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(n, bool)
    thr = np.float32(iou_thres)
    zero = np.float32(0)
    keep = []
    for i in range(n):
        if not alive[i]:
            continue
        keep.append(order[i])
        if len(keep) == max_keep or i == n - 1:
            break
        t = slice(i + 1, n)
        w = np.maximum(np.minimum(x2[i], x2[t]) - np.maximum(x1[i], x1[t]), zero)
        h = np.maximum(np.minimum(y2[i], y2[t]) - np.maximum(y1[i], y1[t]), zero)
        inter = w * h
        if inter.any():
            alive[t] &= inter / (areas[i] + areas[t] - inter) <= thr
    return np.asarray(keep, np.int64)


def select_raw(
    pred: np.ndarray, nc: int, conf: float, iou: float, max_det: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """non_max_suppression (agnostic=False, multi_label=False) on one image's raw output0
    (4 + nc + nm, N) -> boxes xyxy (input pixels), scores, classes, mask coefficients."""
    cls = pred[4 : 4 + nc]
    thr = np.float32(conf)
    cand = np.flatnonzero(cls.max(axis=0) > thr)
    if cand.size == 0:
        nm = pred.shape[0] - 4 - nc
        return (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, nm), np.float32),
        )
    x = pred[:, cand].T  # (n, 4 + nc + nm), gathered once
    xy, wh = x[:, :2], x[:, 2:4] / np.float32(2)
    box = np.concatenate([xy - wh, xy + wh], axis=1)
    j = x[:, 4 : 4 + nc].argmax(axis=1)
    score = x[np.arange(len(x)), 4 + j]
    coef = x[:, 4 + nc :]
    if len(score) > MAX_NMS:
        top = np.argsort(-score, kind="stable")[:MAX_NMS]
        box, score, j, coef = box[top], score[top], j[top], coef[top]
    offset = box + (j.astype(np.float32) * np.float32(MAX_WH))[:, None]
    keep = nms_greedy(offset, score, iou, max_det)
    return box[keep], score[keep], j[keep].astype(np.int64), coef[keep]


def select_end2end(
    pred: np.ndarray, conf: float, max_det: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """non_max_suppression's end-to-end branch on (K, 6 + nm): score > conf, first max_det rows."""
    idx = np.flatnonzero(pred[:, 4] > np.float32(conf))[:max_det]
    x = pred[idx]
    return x[:, :4].copy(), x[:, 4].copy(), x[:, 5].astype(np.int64), x[:, 6:]


def scale_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """ultralytics.utils.ops.scale_boxes(img1_shape=input, boxes, img0_shape=frame), float32."""
    (h0, w0), (h1, w1) = lb.orig_hw, lb.input_hw
    gain = min(h1 / h0, w1 / w0)
    new_h, new_w = max(round(h0 * gain), 1), max(round(w0 * gain), 1)
    gy, gx = np.float32(new_h / h0), np.float32(new_w / w0)
    px, py = round((w1 - new_w) / 2 - 0.1), round((h1 - new_h) / 2 - 0.1)
    b = boxes.astype(np.float32, copy=True)
    b[:, [0, 2]] = ((b[:, [0, 2]] - np.float32(px)) / gx).clip(0, w0)
    b[:, [1, 3]] = ((b[:, [1, 3]] - np.float32(py)) / gy).clip(0, h0)
    return b


def _content_crop(lb: Letterbox) -> tuple[int, int, int, int]:
    """scale_masks' unpadded region (top, bottom, left, right) of the network input."""
    (h0, w0), (h1, w1) = lb.orig_hw, lb.input_hw
    gain = min(h1 / h0, w1 / w0)
    pad_w, pad_h = (w1 - max(round(w0 * gain), 1)) / 2, (h1 - max(round(h0 * gain), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    return top, top + max(round(h0 * gain), 1), left, left + max(round(w0 * gain), 1)


def masks_to_frame(
    protos: np.ndarray, coef: np.ndarray, boxes_in: np.ndarray, lb: Letterbox
) -> tuple[list[tuple[int, int, np.ndarray]], np.ndarray]:
    """process_mask(upsample=True) + scale_masks(...) > 0.5, evaluated only inside each box.

    protos: (nm, mh, mw); coef: (n, nm); boxes_in: (n, 4) xyxy in network-input pixels.
    Returns the masks as (y0, x0, bool window) in the frame, and the ``keep`` flags (a mask
    non-empty at the network input, as Ultralytics' construct_result filters).

    Why windows: Ultralytics computes every mask over the whole prototype grid and upsamples it
    to the whole input before cropping to the box; the values inside the box only depend on the
    prototype pixels under it, so computing just those gives the same numbers at a fraction of
    the cost (the decode budget is a few ms for hundreds of detections)."""
    nm, mh, mw = protos.shape
    h1, w1 = lb.input_hw
    h0, w0 = lb.orig_hw
    coef = np.ascontiguousarray(coef, np.float32)
    py0, py1, _, _ = _axis(mh, h1)
    px0, px1, _, _ = _axis(mw, w1)
    # crop_mask: column r kept when x1 <= r < x2 (r integer, float32 compare) -> r in [ceil x1, ceil x2).
    b = boxes_in.astype(np.float32)
    c0 = np.clip(np.ceil(b[:, 0]), 0, w1).astype(np.int64)
    c1 = np.clip(np.ceil(b[:, 2]), 0, w1).astype(np.int64)
    r0 = np.clip(np.ceil(b[:, 1]), 0, h1).astype(np.int64)
    r1 = np.clip(np.ceil(b[:, 3]), 0, h1).astype(np.int64)
    top, bottom, left, right = _content_crop(lb)
    ch, cw = bottom - top, right - left
    identity = (ch, cw) == (h0, w0)  # bilinear at scale 1 returns its input exactly
    if not identity:
        yi0, yi1, _, _ = _axis(ch, h0)
        xi0, xi1, _, _ = _axis(cw, w0)
    # An integer upscale of the unpadded region (a 720x1280 frame at 640: x2) samples on a grid
    # that cv2.resize of a window reproduces; other scales take the numpy path.
    gy, gx = (h0 // ch, w0 // cw) if not identity and h0 % ch == 0 and w0 % cw == 0 else (0, 0)
    out: list[tuple[int, int, np.ndarray]] = []
    keep = np.zeros(len(b), bool)
    # Integer upsampling factor (4 in every Ultralytics export): cv2.resize of a window with a
    # one-pixel margin samples exactly where PyTorch does (half-pixel centres, edge clamping only
    # at the real border) and is ~2.5x faster than the general numpy path.
    fy, fx = (h1 // mh, w1 // mw) if h1 % mh == 0 and w1 % mw == 0 else (0, 0)
    for k in range(len(b)):
        ra, rb, ca, cb = int(r0[k]), int(r1[k]), int(c0[k]), int(c1[k])
        if rb <= ra or cb <= ca:
            continue
        # the prototype window under the box (every bilinear tap of its pixels)
        sy0, sy1 = int(py0[ra]), int(py1[rb - 1]) + 1
        sx0, sx1 = int(px0[ca]), int(px1[cb - 1]) + 1
        if fy:
            sy0, sy1, sx0, sx1 = (
                max(sy0 - 1, 0),
                min(sy1 + 1, mh),
                max(sx0 - 1, 0),
                min(sx1 + 1, mw),
            )
        win = (coef[k] @ protos[:, sy0:sy1, sx0:sx1].reshape(nm, -1)).reshape(sy1 - sy0, sx1 - sx0)
        if fy:
            up = cv2.resize(
                win, (win.shape[1] * fx, win.shape[0] * fy), interpolation=cv2.INTER_LINEAR
            )
            m = up[ra - sy0 * fy : rb - sy0 * fy, ca - sx0 * fx : cb - sx0 * fx] > 0
        else:
            m = _bilinear_window(win, sy0, sx0, (mh, mw), (h1, w1), (ra, rb), (ca, cb)) > 0
        if not m.any():
            continue
        keep[k] = True
        # scale_masks: the mask restricted to the unpadded region, bilinear to the frame, > 0.5.
        ty0, tx0 = ra - top, ca - left
        a0, a1 = max(ty0, 0), min(ty0 + m.shape[0], ch)
        b0, b1 = max(tx0, 0), min(tx0 + m.shape[1], cw)
        if a1 <= a0 or b1 <= b0:  # the mask lies in the padding only
            out.append((0, 0, np.zeros((0, 0), bool)))
            continue
        src = m[a0 - ty0 : a1 - ty0, b0 - tx0 : b1 - tx0]
        if identity:
            out.append((a0, b0, src))
            continue
        if gy:  # integer upscale: cv2 on the window plus a zero margin (the mask is 0 there)
            pa0, pa1, pb0, pb1 = max(a0 - 1, 0), min(a1 + 1, ch), max(b0 - 1, 0), min(b1 + 1, cw)
            padded = np.zeros((pa1 - pa0, pb1 - pb0), np.float32)
            padded[a0 - pa0 : a1 - pa0, b0 - pb0 : b1 - pb0] = src
            size = ((pb1 - pb0) * gx, (pa1 - pa0) * gy)
            up = cv2.resize(padded, size, interpolation=cv2.INTER_LINEAR)
            out.append((pa0 * gy, pb0 * gx, up > np.float32(0.5)))
            continue
        rows = _dst_range(yi0, yi1, a0, a1)
        cols = _dst_range(xi0, xi1, b0, b1)
        if rows[1] <= rows[0] or cols[1] <= cols[0]:
            out.append((0, 0, np.zeros((0, 0), bool)))
            continue
        v = _bilinear_window(src.astype(np.float32), a0, b0, (ch, cw), (h0, w0), rows, cols)
        out.append((rows[0], cols[0], v > np.float32(0.5)))
    return out, keep


# ------------------------------------------------------------------------------------------------
# The family
# ------------------------------------------------------------------------------------------------
def _dims(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def _metadata_imgsz(meta: Mapping[str, str]) -> tuple[int, int] | None:
    raw = meta.get("imgsz")
    if not raw:
        return None
    try:
        v = ast.literal_eval(raw) if isinstance(raw, str) else raw
    except (ValueError, SyntaxError):
        return None
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    return None


def is_end2end(meta: Mapping[str, str], card: Mapping[str, Any]) -> bool:
    """Whether output0 is (batch, K, 6 + nm) rows of xyxy, score, class, coefficients: YOLO26's
    NMS-free head (metadata end2end 'True') or an export with NMS in the graph (``nms=True``,
    metadata args {'nms': True}); Ultralytics' AutoBackend decides the same way."""
    if "end2end" in card:
        return bool(card["end2end"])
    if str(meta.get("end2end", "")).strip().lower() == "true":
        return True
    try:
        args = ast.literal_eval(meta.get("args", "{}"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False
    return isinstance(args, dict) and bool(args.get("nms"))


class YoloSegFamily(ModelFamily):
    """Ultralytics YOLO-seg ONNX exports (v8 / 11 / 26, raw or end-to-end head)."""

    name = "yolo_seg"
    #: YOLO-seg detects objects: every class is a thing, whatever a preset says about its name.
    ALL_THINGS = True
    PARAMETERS = (
        ParamSpec(
            "yolo_conf",
            0.25,
            0.0,
            1.0,
            "YOLO-seg: minimum class score a detection needs (Ultralytics predict conf, default 0.25)",
        ),
        ParamSpec(
            "yolo_iou",
            0.7,
            0.0,
            1.0,
            "YOLO-seg: IoU above which a lower-scoring box of the same class is suppressed "
            "(Ultralytics predict iou, default 0.7; unused by end-to-end YOLO26 exports)",
        ),
        ParamSpec(
            "yolo_max_det",
            300,
            1,
            30000,
            "YOLO-seg: most detections kept per image (Ultralytics predict max_det, default 300)",
        ),
    )

    # -- recognition ----------------------------------------------------------------------
    @classmethod
    def layout_problems(cls, signature: OnnxSignature) -> list[str]:
        """Every way the graph differs from an Ultralytics segment export (empty = fits)."""
        problems = []
        if signature.input(INPUT_NAME) is None:
            problems.append(f"ONNX input {INPUT_NAME!r} missing (has {signature.input_names})")
        elif len(signature.input(INPUT_NAME).shape) != 4:
            problems.append(f"input {INPUT_NAME!r} must be (batch, 3, H, W)")
        det, proto = signature.output(OUTPUT_DETS), signature.output(OUTPUT_PROTOS)
        if det is None or proto is None:
            problems.append(
                f"ONNX outputs {OUTPUT_DETS!r} and {OUTPUT_PROTOS!r} missing (has {signature.output_names})"
            )
        else:
            if len(det.shape) != 3:
                problems.append(f"{OUTPUT_DETS!r} must be 3-D, got shape {det.shape}")
            if len(proto.shape) != 4:
                problems.append(f"{OUTPUT_PROTOS!r} must be (batch, nm, h, w), got {proto.shape}")
        task = signature.metadata.get("task")
        if task is not None and task != "segment":
            problems.append(f"metadata task is {task!r}, not 'segment'")
        return problems

    @classmethod
    def matches(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> bool:
        """An Ultralytics segment export: the images/output0/output1 layout plus either the
        exporter's metadata (task='segment') or a model card naming this family."""
        if card.get("family") not in (None, cls.name):
            return False
        return not cls.violations(signature, card)

    # violations / num_classes / ALL_THINGS: hooks of the family registry (the fam branch's
    # ModelFamily); plain extras where base.py lacks them.
    @classmethod
    def violations(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> list[str]:
        """Every way the graph / card is not an Ultralytics segment export (empty: recognised)."""
        problems = cls.layout_problems(signature)
        if card.get("family") != cls.name and signature.metadata.get("task") != "segment":
            problems.append(
                "no Ultralytics metadata (task='segment') and no model card with family: yolo_seg"
            )
        return problems

    @classmethod
    def num_classes(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> int | None:
        """Classes of a raw head (output0 rows - 4 - mask coefficients); else the metadata's
        ``names`` count; None when neither says."""
        det, proto = signature.output(OUTPUT_DETS), signature.output(OUTPUT_PROTOS)
        if det is not None and proto is not None and len(det.shape) == 3 and len(proto.shape) == 4:
            rows, nm = _dims(det.shape)[1], _dims(proto.shape)[1]
            if not is_end2end(signature.metadata, card) and rows is not None and nm is not None:
                return rows - 4 - nm
        if "names" in signature.metadata:
            try:
                return len(parse_names(signature.metadata["names"]))
            except TaxonomyError:
                return None
        return None

    # -- set-up -----------------------------------------------------------------------------
    def __init__(self, taxonomy, signature, card=None, source=None) -> None:
        super().__init__(taxonomy, signature, card, source)
        problems = self.layout_problems(signature)
        meta = signature.metadata
        inp = _dims(signature.input(INPUT_NAME).shape) if not problems else [None] * 4
        hw = (inp[2], inp[3])
        if None in hw:
            card_size = self.card.get("input_size")
            hw = tuple(card_size) if card_size else _metadata_imgsz(meta) or DEFAULT_IMGSZ
        self.input_hw: tuple[int, int] = (int(hw[0]), int(hw[1]))
        self.fixed_batch = inp[0]
        self.end2end = is_end2end(meta, self.card)
        if not problems:
            det = _dims(signature.output(OUTPUT_DETS).shape)
            nm = _dims(signature.output(OUTPUT_PROTOS).shape)[1]
            self.num_masks = nm
            nc = taxonomy.num_classes
            if self.end2end:
                if det[2] is not None and nm is not None and det[2] != 6 + nm:
                    problems.append(
                        f"end-to-end {OUTPUT_DETS!r} must be (batch, K, 6 + {nm}), got {det}"
                    )
            elif det[1] is not None and nm is not None and det[1] != 4 + nc + nm:
                problems.append(
                    f"{OUTPUT_DETS!r} has {det[1]} rows = 4 + nc + {nm} masks -> nc = "
                    f"{det[1] - 4 - nm} classes, but the taxonomy has {nc}"
                    + (f" (from {self.source})" if self.source else "")
                )
        if problems:
            raise YoloSegError(
                f"{self.source or 'model'}: not an Ultralytics YOLO-seg export: "
                + "; ".join(problems)
                + " (see docs/models-ultralytics.md)"
            )

    # -- run time -----------------------------------------------------------------------------
    def prepare(self, images: Sequence[np.ndarray], batch: int) -> Prepared:
        """Letterbox each RGB frame, /255 in float32, NCHW; the batch padded with zeros."""
        n = max(batch, len(images))
        h, w = self.input_hw
        feed = np.zeros((n, 3, h, w), np.float32)
        transforms = []
        hws = []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise YoloSegError(
                    f"frame {i}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}"
                )
            lb = letterbox_params(img.shape[:2], self.input_hw)
            boxed = letterbox(np.ascontiguousarray(img), lb)
            np.divide(boxed.transpose(2, 0, 1), np.float32(255), out=feed[i], dtype=np.float32)
            transforms.append(lb)
            hws.append((int(img.shape[0]), int(img.shape[1])))
        return Prepared({self.signature.inputs[0].name: feed}, hws, transforms)

    def detections(
        self, outputs: Mapping[str, np.ndarray], prepared: Prepared, index: int
    ) -> YoloDetections:
        """Ultralytics' predict result for frame ``index`` (boxes, scores, classes, masks)."""
        lb: Letterbox = prepared.transforms[index]
        det = np.asarray(outputs[OUTPUT_DETS][index], np.float32)
        protos = np.asarray(outputs[OUTPUT_PROTOS][index], np.float32)
        conf, iou = float(self.config["yolo_conf"]), float(self.config["yolo_iou"])
        max_det = int(self.config["yolo_max_det"])
        nc = self.taxonomy.num_classes
        if self.end2end:
            boxes, scores, classes, coef = select_end2end(det, conf, max_det)
        else:
            boxes, scores, classes, coef = select_raw(det, nc, conf, iou, max_det)
        masks, keep = masks_to_frame(protos, coef, boxes, lb)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        return YoloDetections(scale_boxes(boxes, lb), scores, classes, masks)

    def decode(self, outputs: Mapping[str, np.ndarray], prepared: Prepared, index: int) -> Segments:
        return fuse_detections(
            self.detections(outputs, prepared, index),
            prepared.image_hw[index],
            self.taxonomy.num_classes,
        )


def fuse_detections(dets: YoloDetections, hw: tuple[int, int], num_classes: int) -> Segments:
    """Things-only panoptic map: each pixel to the highest-scoring detection covering it (in
    Ultralytics' order, i.e. descending score; on equal scores the one listed first wins);
    background and class indices outside 0..num_classes-1 (void) are unlabeled (-1). Detections
    left with no pixel are dropped and the others renumbered 1..N in score order."""
    h, w = hw
    inst = np.zeros((h, w), np.int32)
    sem = np.full((h, w), -1, np.int32)
    alive: list[int] = []
    for k, (y0, x0, m) in enumerate(dets.masks):
        c = int(dets.classes[k])
        if not (0 <= c < num_classes) or m.size == 0:
            continue
        win = (slice(y0, y0 + m.shape[0]), slice(x0, x0 + m.shape[1]))
        claim = inst[win] == 0
        claim &= m
        if not claim.any():
            continue
        alive.append(k)
        # numbered in score order as painted: no relabelling pass
        np.copyto(inst[win], len(alive), where=claim)
        np.copyto(sem[win], c, where=claim)
    idx = np.asarray(alive, np.int64)
    return Segments(
        semantic=sem,
        instance=inst,
        classes=dets.classes[idx].astype(np.int32),
        scores=dets.scores[idx].astype(np.float32),
    )
