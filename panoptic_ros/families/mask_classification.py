"""Mask classification family: Hugging Face Mask2Former / MaskFormer and DETR-seg ONNX exports.

These networks predict Q queries, each a class distribution over C classes plus "no object"
(``[B, Q, C+1]``) and a mask logit map (``[B, Q, h, w]``). Hugging Face turns them into a panoptic
map with ``post_process_panoptic_segmentation``; this module reproduces that function in numpy
(no torch at run time), step by step, because the user's expectations (and every published
number for these models) come from it:

1. softmax over C+1, per query score = max probability, label = argmax; keep queries whose label
   is not "no object" and whose score > ``mask_score_threshold`` (HF ``threshold``, default 0.5);
2. Mask2Former only: mask logits are first resized to 384x384 (bilinear, half-pixel) -- HF does
   this for every Mask2Former checkpoint ("Scale back to preprocessed image size");
3. sigmoid, then resize the kept queries' probabilities to the frame size (HF ``target_sizes``);
4. weight each probability map by its query score, per pixel argmax over the kept queries;
5. query k becomes a segment when it wins >= 1 pixel, has >= 1 pixel with weighted probability
   >= ``mask_threshold`` and (pixels won) / (pixels >= mask_threshold) > ``overlap_area_threshold``;
6. stuff classes (HF ``label_ids_to_fuse``; here the taxonomy's non-thing classes) are fused into
   one segment per class; pixels of no segment are void (-1 semantic, never class 0).

Preprocessing follows ``preprocessor_config.json``: resize exactly like the HF PIL image processor
(through Pillow itself when installed; otherwise ``pil_resize_numpy``, Pillow's separable
bilinear/bicubic with 8-bit rounding between passes in numpy), ``rescale_factor`` and
``image_mean`` / ``image_std``. A graph with a fixed input size is fed at that size; a dynamic
graph gets HF's own size rule (shortest/longest edge, ``size_divisor``).

The resize to the frame size uses OpenCV's bilinear resize, which is not bit-exact with torch's
``interpolate`` (OpenCV rounds the source coordinate from double, torch computes it in float32
with a fused multiply-add: up to ~1e-4 difference on logits). ``torch_bilinear`` below is the
exact numpy reproduction; the family uses OpenCV for speed (10x faster) and the tests measure the
pixel agreement end to end. OneFormer is not covered (its graph needs a ``task_inputs`` text
tensor); DETR exports without ``pred_boxes`` (``optimum-cli`` writes only ``logits`` and
``pred_masks``) are accepted, since HF's panoptic post-processing never uses the boxes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.families.base import (
    ModelFamily,
    OnnxSignature,
    ParamSpec,
    Prepared,
    Segments,
)
from panoptic_ros.families.model_store import ModelError

DOCS = "docs/models-hf.md"

#: output names: (class logits, mask logits) for the MaskFormer kind and the DETR kind.
MASKFORMER_OUTPUTS = ("class_queries_logits", "masks_queries_logits")
DETR_OUTPUTS = ("logits", "pred_masks")
INPUT_NAME = "pixel_values"

#: HF resizes Mask2Former mask logits to this size before anything else (all checkpoints).
MASK2FORMER_MASK_SIZE = (384, 384)

#: ImageNet statistics: the HF image processors' defaults when the config omits them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: PIL resample codes (PIL.Image.Resampling) that ``pil_resize`` reproduces.
PIL_BILINEAR = 2
PIL_BICUBIC = 3


# ---------------------------------------------------------------------------------------------
# Model card pieces: config.json / preprocessor_config.json
# ---------------------------------------------------------------------------------------------
def _section(card: Mapping[str, Any], *names: str) -> dict[str, Any]:
    for n in names:
        v = card.get(n)
        if isinstance(v, Mapping):
            return dict(v)
    return {}


def hf_config_of(card: Mapping[str, Any]) -> dict[str, Any]:
    """config.json as carried by the card (key ``hf_config`` or ``config``)."""
    return _section(card, "hf_config", "config")


def preprocessor_of(card: Mapping[str, Any]) -> dict[str, Any]:
    """preprocessor_config.json as carried by the card (key ``preprocessor`` or
    ``preprocessor_config``)."""
    return _section(card, "preprocessor", "preprocessor_config")


def preprocessing_of(card: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessor settings: ``preprocessor_config.json`` when the card carries it, else the
    generic card keys in preprocessor terms (``scale`` -> rescale_factor, ``mean`` / ``std`` in
    the scaled range, ``input_size`` -> size; card defaults 1.0 / 0 / 1 as for every card), else
    {} (HF's processor defaults: 1/255, ImageNet mean/std)."""
    pre = preprocessor_of(card)
    if pre:
        return pre
    color, layout = str(card.get("color", "RGB")).upper(), str(card.get("layout", "NCHW")).upper()
    if color != "RGB" or layout != "NCHW":
        raise ValueError(
            f"card color {color} / layout {layout}: HF pixel_values are RGB NCHW; see {DOCS}"
        )
    if str(card.get("resize", "stretch")).lower() != "stretch":
        raise ValueError(f"card 'resize' {card.get('resize')!r}: this family resizes (stretch)")
    if not any(k in card for k in ("scale", "mean", "std", "input_size")):
        return {}
    pre = {
        "do_rescale": True,
        "rescale_factor": float(card.get("scale", 1.0)),
        "do_normalize": True,
        "image_mean": [float(v) for v in card.get("mean", [0.0, 0.0, 0.0])],
        "image_std": [float(v) for v in card.get("std", [1.0, 1.0, 1.0])],
    }
    if card.get("input_size"):
        h, w = (int(v) for v in card["input_size"])
        pre["size"] = {"height": h, "width": w}
    return pre


def card_from_hf_folder(folder: str | Path) -> dict[str, Any]:
    """The card for a folder as ``optimum-cli export onnx`` / ``save_pretrained`` write it:
    ``config.json`` (id2label, model_type) and ``preprocessor_config.json`` (resize,
    normalisation). A missing preprocessor config means HF's processor defaults."""
    folder = Path(folder)
    card: dict[str, Any] = {"family": "mask_classification"}
    for key, fname in (("hf_config", "config.json"), ("preprocessor", "preprocessor_config.json")):
        path = folder / fname
        if path.is_file():
            try:
                card[key] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(f"{path}: not readable JSON ({exc}); see {DOCS}") from exc
    return card


# ---------------------------------------------------------------------------------------------
# Graph fix-up: GridSample with a float64 grid (TorchScript export of Mask2Former)
# ---------------------------------------------------------------------------------------------
def fix_gridsample_double_grid(model: Any) -> int:
    """Make a Mask2Former graph from ``torch.onnx.export(..., dynamo=False)`` loadable by ONNX
    Runtime; returns the number of nodes changed (0: nothing to do).

    Why: the multi-scale deformable attention builds its sampling grid from ``linspace`` in
    float64, so the exported ``GridSample`` gets a float64 ``grid`` next to a float32 ``X``. That
    is valid ONNX (T2 may be double) but ONNX Runtime (1.32, CPU) registers GridSample for float
    grids only and refuses the session: "Could not find an implementation for GridSample(16)".
    A ``Cast(to=FLOAT)`` on the grid is exact enough (grid values are in [-1, 1]; the tiny models
    in the tests match torch to 1e-7 after it). ``model`` is an ``onnx.ModelProto``, edited in
    place; call this before creating the ORT session (serialize the fixed model to bytes)."""
    import onnx
    from onnx import TensorProto, helper, shape_inference

    grid_nodes = [n for n in model.graph.node if n.op_type == "GridSample"]
    if not grid_nodes:
        return 0
    inferred = shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    changed = 0
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type == "GridSample" and types.get(node.input[1]) == TensorProto.DOUBLE:
            cast_out = f"{node.input[1]}__grid_float32_{changed}"
            nodes.append(
                helper.make_node(
                    "Cast",
                    [node.input[1]],
                    [cast_out],
                    to=TensorProto.FLOAT,
                    name=f"{node.name or 'GridSample'}__grid_cast_{changed}",
                )
            )
            node.input[1] = cast_out
            changed += 1
        nodes.append(node)
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return changed


def runnable_onnx_path(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """``path`` itself when ONNX Runtime can load it as is, else a copy with
    ``fix_gridsample_double_grid`` applied, cached under ``cache_dir`` (default: the project's
    ONNX cache, ``model_store.default_cache_dir()``) by the file's sha256. Call it where a user
    ONNX path is resolved, before the backend opens it (ORT and TensorRT alike)."""
    import os
    import tempfile

    import onnx

    from panoptic_ros.backends.engine_cache import sha256_file
    from panoptic_ros.families.model_store import default_cache_dir

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    if not any(n.op_type == "GridSample" for n in model.graph.node):
        return path
    model = onnx.load(str(path))
    if fix_gridsample_double_grid(model) == 0:
        return path
    digest = sha256_file(path)[:16]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{path.stem}-{digest}-gridsample-f32.onnx"
    if not out.is_file():
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".onnx.tmp")
        os.close(fd)
        if model.ByteSize() > 2**31 - 2**24:  # protobuf's 2 GB limit: weights beside the graph
            onnx.save(model, tmp, save_as_external_data=True, location=out.name + ".data")
        else:
            onnx.save(model, tmp)
        os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------
# Resizing exactly like Pillow (HF PIL image processors) and like torch.nn.functional.interpolate
# ---------------------------------------------------------------------------------------------
_PREC = 22  # Pillow's PRECISION_BITS for 8-bit images (32 - 8 - 2)


def _pil_filter(resample: int) -> tuple[Any, float]:
    if resample == PIL_BILINEAR:
        return (lambda x: np.maximum(1.0 - np.abs(x), 0.0)), 1.0
    if resample == PIL_BICUBIC:

        def cubic(x: np.ndarray) -> np.ndarray:
            a = -0.5
            x = np.abs(x)
            return np.where(
                x < 1.0,
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
                np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0),
            )

        return cubic, 2.0
    raise ModelError(
        f"preprocessor_config.json resample={resample} is not supported "
        f"(only {PIL_BILINEAR} bilinear and {PIL_BICUBIC} bicubic); see {DOCS}"
    )


def _pil_coeffs(in_size: int, out_size: int, resample: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output index the first source
    index (xmin) and a row of fixed-point weights (int64, ksize wide, zero-padded)."""
    filt, support = _pil_filter(resample)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)  # C (int) truncation
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    w = filt((taps[None, :] + xmin[:, None] - centers[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(taps[None, :] < xmax[:, None], w, 0.0)
    ww = w.sum(axis=1, keepdims=True)
    w = np.where(ww != 0.0, w / np.where(ww != 0.0, ww, 1.0), w)
    fixed = np.where(w < 0, -0.5 + w * (1 << _PREC), 0.5 + w * (1 << _PREC)).astype(np.int64)
    return xmin, fixed


def _pil_pass(image: np.ndarray, out_size: int, axis: int, resample: int) -> np.ndarray:
    """One separable 8-bit pass along ``axis`` (0 rows, 1 columns) of an (H, W, C) uint8."""
    in_size = image.shape[axis]
    xmin, k = _pil_coeffs(in_size, out_size, resample)
    src = image.astype(np.int64)
    acc = np.full(
        (out_size, image.shape[1], image.shape[2])
        if axis == 0
        else (image.shape[0], out_size, image.shape[2]),
        1 << (_PREC - 1),
        dtype=np.int64,
    )
    for t in range(k.shape[1]):
        if not k[:, t].any():
            continue
        idx = np.minimum(xmin + t, in_size - 1)  # zero weights beyond xmax make clamping harmless
        if axis == 0:
            acc += src[idx, :, :] * k[:, t][:, None, None]
        else:
            acc += src[:, idx, :] * k[:, t][None, :, None]
    return np.clip(acc >> _PREC, 0, 255).astype(np.uint8)


def pil_resize_numpy(
    image: np.ndarray,
    size: tuple[int, int],
    resample: int = PIL_BILINEAR,
    vertical_first: bool = False,
) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8 with Pillow's algorithm in numpy: separable passes with
    an antialiasing filter whose support grows with the downscale factor, 22-bit fixed-point
    weights and 8-bit rounding between the passes. Pillow <= 12 always runs the horizontal pass
    first; Pillow 13 sometimes runs the vertical one first (results then differ by 1 on a few
    pixels), hence ``vertical_first``."""
    h, w = size
    out = image
    passes = [(w, 1), (h, 0)]
    for n, axis in reversed(passes) if vertical_first else passes:
        if out.shape[axis] != n:
            out = _pil_pass(out, n, axis, resample)
    return out if out is not image else image.copy()


def pil_resize(
    image: np.ndarray, size: tuple[int, int], resample: int = PIL_BILINEAR
) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8 exactly as HF's PIL image processors resize:
    ``PIL.Image.resize((w, h), resample)``.

    Why not cv2: Pillow antialiases when shrinking (its filter support grows with the scale) and
    rounds to 8 bits between its passes; matching it keeps our network input bit-identical to
    HF's. Pillow is used when installed (exact for every Pillow version); otherwise the numpy
    reimplementation (exact for Pillow <= 12)."""
    try:
        from PIL import Image
    except ImportError:
        return pil_resize_numpy(image, size, resample)
    if image.shape[2] == 3:
        pil = Image.fromarray(np.ascontiguousarray(image), mode=None)
        return np.asarray(pil.resize((int(size[1]), int(size[0])), resample=resample))
    return pil_resize_numpy(image, size, resample)


def _torch_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear (align_corners=False) source indices and float32 weights; the source
    coordinate is computed in float32 with one rounding (torch's kernel compiles to an FMA)."""
    if n_in == n_out:
        i = np.arange(n_out)
        return i, i, np.ones(n_out, np.float32), np.zeros(n_out, np.float32)
    scale = np.float32(n_in / n_out)
    d = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    src = (np.float64(scale) * d.astype(np.float64) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    return i0, i1, (np.float32(1) - l1).astype(np.float32), l1


def torch_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) float32 -> (K, H, W): ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` in numpy (agrees to ~5e-7). Slow; the reference for tests."""
    i0, i1, a0, a1 = _torch_taps(x.shape[2], size[1])
    t = x[:, :, i0] * a0 + x[:, :, i1] * a1
    j0, j1, b0, b1 = _torch_taps(x.shape[1], size[0])
    return t[:, j0, :] * b0[:, None] + t[:, j1, :] * b1[:, None]


def fast_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) float32 -> (K, H, W) with OpenCV's bilinear resize (same half-pixel geometry as
    torch, source coordinate rounded differently: ~1e-4 on logits)."""
    k, h, w = x.shape
    if (h, w) == tuple(size):
        return x
    if k == 0:
        return np.zeros((0, *size), np.float32)
    out = np.empty((k, *size), np.float32)
    dsize = (int(size[1]), int(size[0]))
    for start in range(0, k, 512):  # OpenCV handles at most 512 channels per call
        chunk = np.ascontiguousarray(x[start : start + 512].transpose(1, 2, 0))
        r = cv2.resize(chunk, dsize, interpolation=cv2.INTER_LINEAR)
        out[start : start + 512] = r.reshape(size[0], size[1], -1).transpose(2, 0, 1)
    return out


# ---------------------------------------------------------------------------------------------
# HF's size rule
# ---------------------------------------------------------------------------------------------
def _size_with_aspect_ratio(
    hw: tuple[int, int], size: int, max_size: int | None
) -> tuple[int, int]:
    """transformers.image_transforms.get_size_with_aspect_ratio, verbatim semantics."""
    height, width = hw
    raw_size = None
    if max_size is not None:
        mn, mx = float(min(hw)), float(max(hw))
        if mx / mn * size > max_size:
            raw_size = max_size * mn / mx
            size = int(round(raw_size))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        ow = size
        oh = int(raw_size * height / width) if raw_size is not None else int(size * height / width)
    else:
        oh = size
        ow = int(raw_size * width / height) if raw_size is not None else int(size * width / height)
    return oh, ow


def hf_resize_target(hw: tuple[int, int], pre: Mapping[str, Any]) -> tuple[int, int]:
    """The (h, w) HF's image processor resizes a frame of size ``hw`` to (dynamic-size graphs)."""
    size = pre.get("size") or {"shortest_edge": 800, "longest_edge": 1333}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if size.get("height") and size.get("width"):
        new = (int(size["height"]), int(size["width"]))
    elif size.get("shortest_edge"):
        longest = size.get("longest_edge") or pre.get("max_size")
        new = _size_with_aspect_ratio(
            hw, int(size["shortest_edge"]), int(longest) if longest else None
        )
    elif size.get("max_height") and size.get("max_width"):
        s = min(size["max_height"] / hw[0], size["max_width"] / hw[1])
        new = (int(hw[0] * s), int(hw[1] * s))
    else:
        raise ModelError(f"preprocessor_config.json size {size} not understood; see {DOCS}")
    div = int(pre.get("size_divisor") or 0)
    if div > 0:
        new = (int(math.ceil(new[0] / div) * div), int(math.ceil(new[1] / div) * div))
    return new


# ---------------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------------
def _kind_outputs(signature: OnnxSignature) -> tuple[str, str] | None:
    names = set(signature.output_names)
    for pair in (MASKFORMER_OUTPUTS, DETR_OUTPUTS):
        if set(pair) <= names:
            return pair
    return None


class MaskClassificationFamily(ModelFamily):
    """HF Mask2Former / MaskFormer / DETR-seg: queries of (class distribution, mask) fused into a
    panoptic map with HF's ``post_process_panoptic_segmentation`` semantics (module docstring)."""

    name = "mask_classification"
    #: True: HF's arithmetic step by step (torch-exact interpolation; slow, for tests)
    exact_decode = False
    PARAMETERS = (
        ParamSpec(
            "mask_score_threshold",
            0.5,
            0.0,
            1.0,
            "Queries whose best class probability is not above this are dropped "
            "(HF post_process_panoptic_segmentation `threshold`, default 0.5).",
        ),
        ParamSpec(
            "mask_threshold",
            0.5,
            0.0,
            1.0,
            "A pixel belongs to a query's mask when its score-weighted mask probability is at "
            "least this (HF `mask_threshold`).",
        ),
        ParamSpec(
            "overlap_area_threshold",
            0.8,
            0.0,
            1.0,
            "A query becomes a segment only when the pixels it wins are more than this fraction "
            "of its own mask (drops fragments; HF `overlap_mask_area_threshold`).",
        ),
    )

    # -- recognition -------------------------------------------------------------------------
    def runnable_onnx(self, path: Path) -> Path:
        """A TorchScript-exported Mask2Former needs its float64 GridSample grid cast
        (``runnable_onnx_path``); every other graph is returned as is."""
        return runnable_onnx_path(path)

    @classmethod
    def violations(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> list[str]:
        """Every way the graph breaks this family's contract (empty: recognised)."""
        problems: list[str] = []
        inp = signature.input(INPUT_NAME)
        if inp is None:
            problems.append(f"input {INPUT_NAME!r} missing (has {signature.input_names})")
        elif (
            len(inp.shape) != 4
            or inp.shape[1] not in (3, None)
            and not isinstance(inp.shape[1], str)
        ):
            problems.append(f"input {INPUT_NAME!r} must be [B, 3, H, W], got {list(inp.shape)}")
        extra = [n for n in signature.input_names if n != INPUT_NAME]
        if extra:
            problems.append(f"extra inputs {extra} (OneFormer's task_inputs is not supported)")
        pair = _kind_outputs(signature)
        if pair is None:
            problems.append(
                "outputs must include class_queries_logits + masks_queries_logits "
                "(Mask2Former/MaskFormer) or logits + pred_masks (DETR-seg), "
                f"has {signature.output_names}"
            )
        else:
            cl, ms = signature.output(pair[0]), signature.output(pair[1])
            if len(cl.shape) != 3:
                problems.append(f"output {cl.name!r} must be [B, Q, C+1], got {list(cl.shape)}")
            if len(ms.shape) != 4:
                problems.append(f"output {ms.name!r} must be [B, Q, h, w], got {list(ms.shape)}")
        return problems

    @classmethod
    def num_classes(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> int | None:
        """C from the class logits' last axis (C+1), else from config.json id2label."""
        pair = _kind_outputs(signature)
        if pair is not None:
            last = signature.output(pair[0]).shape[-1]
            if isinstance(last, int) and last >= 2:
                return last - 1
        id2label = hf_config_of(card).get("id2label")
        return len(id2label) if isinstance(id2label, Mapping) and id2label else None

    # -- set-up --------------------------------------------------------------------------------
    def __init__(
        self,
        taxonomy: Taxonomy,
        signature: OnnxSignature,
        card: Mapping[str, Any] | None = None,
        source: Path | None = None,
    ) -> None:
        super().__init__(taxonomy, signature, card, source)
        problems = self.violations(signature, self.card)
        if problems:
            raise ModelError(
                f"{source or 'model'}: not a mask classification graph: "
                + "; ".join(problems)
                + f"; see {DOCS}"
            )
        self.class_output, self.mask_output = _kind_outputs(signature)  # type: ignore[misc]
        config = hf_config_of(self.card)
        self.model_type = str(config.get("model_type") or self.card.get("model_type") or "")
        if not self.model_type:
            self.model_type = "detr" if self.class_output == "logits" else "maskformer"
        # HF resizes mask logits to 384x384 first for Mask2Former only.
        self.pre_mask_size = MASK2FORMER_MASK_SIZE if self.model_type == "mask2former" else None
        n = self.num_classes(signature, self.card)
        if n is not None and n != taxonomy.num_classes:
            raise ModelError(
                f"{source or 'model'}: the model predicts {n} classes (+ 'no object') but the "
                f"taxonomy has {taxonomy.num_classes}; see {DOCS}"
            )
        self.fuse_ids = frozenset(taxonomy.stuff_ids)
        pre = preprocessing_of(self.card)
        self.pre = pre
        self.do_resize = bool(pre.get("do_resize", True))
        self.resample = int(pre.get("resample", PIL_BILINEAR))
        _pil_filter(self.resample)  # refuse an unsupported filter now, not on the first frame
        self.do_rescale = bool(pre.get("do_rescale", True))
        self.rescale_factor = float(pre.get("rescale_factor", 1 / 255))
        self.do_normalize = bool(pre.get("do_normalize", True))
        mean = pre.get("image_mean", IMAGENET_MEAN)
        std = pre.get("image_std", IMAGENET_STD)
        self.mean = np.asarray(mean if isinstance(mean, Sequence) else [mean] * 3, np.float32)
        self.std = np.asarray(std if isinstance(std, Sequence) else [std] * 3, np.float32)
        shape = signature.input(INPUT_NAME).shape  # type: ignore[union-attr]
        h, w = shape[2], shape[3]
        self.fixed_hw = (h, w) if isinstance(h, int) and isinstance(w, int) else None

    # -- input --------------------------------------------------------------------------------
    def network_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The size a frame of ``hw`` is resized to: the graph's fixed H, W, else HF's rule."""
        if self.fixed_hw is not None:
            if not self.do_resize and tuple(hw) != self.fixed_hw:
                raise ValueError(
                    f"frame is {hw[0]}x{hw[1]} but the graph takes {self.fixed_hw[0]}x"
                    f"{self.fixed_hw[1]} and preprocessor_config.json says do_resize=false"
                )
            return self.fixed_hw
        return hf_resize_target(hw, self.pre) if self.do_resize else tuple(hw)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 -> (3, h, w) float32 exactly as HF: float64 rescale, then float32
        (x - mean) / std."""
        x = image.astype(np.float32)
        if self.do_rescale:
            x = (image.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def prepare(self, images: Sequence[np.ndarray], batch: int) -> Prepared:
        if not images:
            raise ValueError("no images to prepare")
        if len(images) > batch:
            raise ValueError(f"{len(images)} frames do not fit a batch of {batch}")
        arrays, sizes, hws = [], [], []
        for im in images:
            if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(
                    f"image must be (H, W, 3) uint8 RGB, got {getattr(im, 'shape', im)}"
                )
            if im.dtype != np.uint8:
                raise ValueError(f"image must be uint8 RGB, got dtype {im.dtype}")
            hw = (int(im.shape[0]), int(im.shape[1]))
            net = self.network_size(hw)
            resized = pil_resize(im, net, self.resample) if net != hw else im
            arrays.append(self.normalize(resized))
            sizes.append(net)
            hws.append(hw)
        # frames of different sizes in a dynamic graph: zero padding bottom/right, like HF's pad
        ph = max(a.shape[1] for a in arrays)
        pw = max(a.shape[2] for a in arrays)
        feed = np.zeros((batch, 3, ph, pw), np.float32)
        for i, a in enumerate(arrays):
            feed[i, :, : a.shape[1], : a.shape[2]] = a
        return Prepared({INPUT_NAME: feed}, hws, [(s, (ph, pw)) for s in sizes])

    # -- output -------------------------------------------------------------------------------
    def decode(self, outputs: Mapping[str, np.ndarray], prepared: Prepared, index: int) -> Segments:
        for name in (self.class_output, self.mask_output):
            if name not in outputs:
                raise ModelError(f"output {name!r} missing from the backend's results")
        logits = np.asarray(outputs[self.class_output][index], np.float32)
        masks = np.asarray(outputs[self.mask_output][index], np.float32)
        if logits.ndim != 2 or masks.ndim != 3 or masks.shape[0] != logits.shape[0]:
            raise ModelError(
                f"{self.class_output} {logits.shape} / {self.mask_output} {masks.shape}: "
                "expected [Q, C+1] and [Q, h, w] per image"
            )
        if logits.shape[1] != self.taxonomy.num_classes + 1:
            raise ModelError(
                f"{self.class_output} has {logits.shape[1]} = C+1 class scores but the taxonomy "
                f"has {self.taxonomy.num_classes} classes (expected {self.taxonomy.num_classes + 1})"
            )
        (net_hw, pad_hw) = prepared.transforms[index] if prepared.transforms else (None, None)
        if net_hw is not None and tuple(net_hw) != tuple(pad_hw):
            # mixed sizes in one batch: keep the frame's own share of the (padded) mask grid
            mh = round(masks.shape[1] * net_hw[0] / pad_hw[0])
            mw = round(masks.shape[2] * net_hw[1] / pad_hw[1])
            masks = masks[:, : max(mh, 1), : max(mw, 1)]
        return fuse_panoptic(
            logits,
            masks,
            prepared.image_hw[index],
            score_threshold=float(self.config["mask_score_threshold"]),
            mask_threshold=float(self.config["mask_threshold"]),
            overlap_threshold=float(self.config["overlap_area_threshold"]),
            fuse_ids=self.fuse_ids,
            pre_mask_size=self.pre_mask_size,
            exact=self.exact_decode,
        )


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative logits: sigmoid 0
        return 1.0 / (1.0 + np.exp(-x))


def _ownership_exact(
    m: np.ndarray, scores: np.ndarray, hw: tuple[int, int], pre: tuple[int, int] | None, thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """HF's steps literally (torch-exact interpolation, full (K, H, W) volume): owner map and
    each query's pixel count with score-weighted probability >= thr. The reference; slow."""
    if pre is not None:
        m = torch_bilinear(m, pre)
    m = torch_bilinear(_sigmoid(m).astype(np.float32), hw)
    m *= scores[:, None, None]
    owner = m.argmax(axis=0)  # first maximum wins, like torch.argmax
    return owner, np.count_nonzero(m >= thr, axis=(1, 2))


def _resize2d(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if x.shape == tuple(hw):
        return x.copy()
    return cv2.resize(x, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_LINEAR)


def _ownership_fast(
    m: np.ndarray, scores: np.ndarray, hw: tuple[int, int], pre: tuple[int, int] | None, thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Same result as ``_ownership_exact`` up to float rounding, without the (K, H, W) volume.

    One query at a time, in reused buffers (fresh frame-sized arrays per query cost more than
    the arithmetic): OpenCV resizes (the score weight is applied before the last resize, which
    is linear), the pixels >= thr are counted, and a running maximum keeps the owner; a strictly
    greater value takes the pixel over, so on equal values the lowest index wins (torch.argmax's
    rule)."""
    k_total = m.shape[0]
    h, w = int(hw[0]), int(hw[1])
    best = np.empty((h, w), np.float32)
    full = np.empty((h, w), np.float32)
    takes = np.empty((h, w), bool)
    owner = np.zeros((h, w), np.uint8 if k_total <= 256 else np.int32)
    mid = np.empty(pre, np.float32) if pre is not None else None
    own = np.empty(k_total, np.int64)
    for k in range(k_total):
        if mid is not None:
            p = cv2.resize(m[k], (pre[1], pre[0]), dst=mid, interpolation=cv2.INTER_LINEAR)
        else:
            p = m[k].copy()
        np.negative(p, out=p)  # sigmoid in place: 1 / (1 + exp(-x))
        with np.errstate(over="ignore"):
            np.exp(p, out=p)
        p += 1.0
        np.reciprocal(p, out=p)
        p *= scores[k]
        dst = best if k == 0 else full
        if p.shape == (h, w):
            np.copyto(dst, p)
        else:
            cv2.resize(p, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)
        own[k] = np.count_nonzero(dst >= thr)
        if k == 0:
            continue
        np.greater(full, best, out=takes)
        np.maximum(best, full, out=best)
        owner[takes] = k
    return owner, own


def fuse_panoptic(
    class_logits: np.ndarray,
    mask_logits: np.ndarray,
    target_hw: tuple[int, int],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap_threshold: float = 0.8,
    fuse_ids: frozenset[int] | set[int] = frozenset(),
    pre_mask_size: tuple[int, int] | None = None,
    exact: bool = False,
) -> Segments:
    """HF ``post_process_panoptic_segmentation`` for one image, in numpy.

    class_logits (Q, C+1), mask_logits (Q, h, w) -> Segments at ``target_hw``. Things get
    instance ids 1..N in HF's segment order; fused (stuff) classes get one segment per class and
    instance 0; pixels of no segment are -1 in ``semantic``. ``exact`` follows HF's arithmetic
    step by step (torch-exact interpolation; ~10x slower), otherwise the fast path (OpenCV,
    see ``_ownership_fast``) agrees with it except on near-tied pixels.

    One deliberate difference: HF can hand out a segment id twice (transformers issue #23461:
    after a fused stuff class reappears, the next thing reuses a taken id), merging unrelated
    segments in its map; here every accepted thing query is its own instance."""
    h, w = int(target_hw[0]), int(target_hw[1])
    num_labels = class_logits.shape[1] - 1
    probs = _softmax(class_logits.astype(np.float32))
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1).astype(np.float32)
    keep = (labels != num_labels) & (scores > score_threshold)
    if not keep.any():
        return Segments(
            np.full((h, w), -1, np.int32),
            np.zeros((h, w), np.int32),
            np.zeros(0, np.int32),
            np.zeros(0, np.float32),
        )
    labels, scores = labels[keep], scores[keep]
    m = np.ascontiguousarray(mask_logits[keep], np.float32)
    ownership = _ownership_exact if exact else _ownership_fast
    owner, own_area = ownership(m, scores, (h, w), pre_mask_size, mask_threshold)
    won = np.bincount(owner.ravel(), minlength=m.shape[0])
    seg_class = np.full(m.shape[0], -1, np.int32)
    seg_inst = np.zeros(m.shape[0], np.int32)
    classes: list[int] = []
    out_scores: list[float] = []
    for k in range(m.shape[0]):
        if won[k] == 0 or own_area[k] == 0 or not won[k] / own_area[k] > overlap_threshold:
            continue
        c = int(labels[k])
        seg_class[k] = c
        if c in fuse_ids:  # stuff: one segment per class, no instance
            continue
        classes.append(c)
        out_scores.append(float(scores[k]))
        seg_inst[k] = len(classes)
    if m.shape[0] <= 256:  # uint8 owners: OpenCV's table lookup, several times numpy's speed
        owner8 = owner.astype(np.uint8, copy=False)
        semantic = cv2.LUT(owner8, np.resize(seg_class, 256).astype(np.int32))
        instance = cv2.LUT(owner8, np.resize(seg_inst, 256).astype(np.int32))
    else:
        semantic, instance = seg_class[owner], seg_inst[owner]
    return Segments(
        semantic.astype(np.int32, copy=False),
        instance.astype(np.int32, copy=False),
        np.asarray(classes, np.int32),
        np.asarray(out_scores, np.float32),
    )
