"""Card-driven image input for families that stretch-resize (Panoptic-DeepLab raw heads, cards).

The model card (docs/models.md "Model card") says how the graph wants its pixels:

    input: image          # graph input name (default: the graph's only image-like input)
    layout: NCHW          # or NHWC
    color: RGB            # or BGR
    scale: 1.0            # pixel * scale ...
    mean: [0, 0, 0]       # ... - mean, / std (per channel, in the scaled range)
    std: [1, 1, 1]
    input_size: [H, W]    # only when the graph's spatial size is dynamic

Defaults are this project's raw export (``panoptic-ros export --raw``): raw RGB 0..255 in NCHW,
normalisation inside the graph. Resize: stretch (core/preprocess.py explains why), INTER_AREA
down (staged for large fractional factors: ``preprocess.resize_image``) / INTER_LINEAR up, the
same as the node's own model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from panoptic_ros.core.preprocess import Preprocessor, check_image, resize_image
from panoptic_ros.families.base import OnnxSignature, TensorInfo


class CardError(ValueError):
    """A model card value is missing or malformed (names the key and what is allowed)."""


def image_input(signature: OnnxSignature, card: Mapping[str, Any]) -> TensorInfo | None:
    """The graph input that takes the image: ``card['input']``, else the only 4-D float input."""
    name = card.get("input")
    if name:
        return signature.input(str(name))
    cands = [t for t in signature.inputs if len(t.shape) == 4 and t.dtype.startswith("float")]
    return cands[0] if len(cands) == 1 else None


class ImageInput:
    """Frames -> the graph's image feed, as the card says (module docstring)."""

    def __init__(self, signature: OnnxSignature, card: Mapping[str, Any]) -> None:
        t = image_input(signature, card)
        if t is None:
            raise CardError(
                f"cannot tell the image input among {signature.input_names}; set 'input' in the card"
            )
        self.name = t.name
        if str(card.get("resize", "stretch")).lower() != "stretch":
            raise CardError(
                f"card 'resize' {card.get('resize')!r}: this family stretches frames to the graph's "
                "size (resize: stretch); letterbox is the yolo_seg family's"
            )
        self.layout = str(card.get("layout", "NCHW")).upper()
        if self.layout not in ("NCHW", "NHWC"):
            raise CardError(f"card 'layout' must be NCHW or NHWC, got {self.layout!r}")
        self.bgr = str(card.get("color", "RGB")).upper() == "BGR"
        if str(card.get("color", "RGB")).upper() not in ("RGB", "BGR"):
            raise CardError(f"card 'color' must be RGB or BGR, got {card.get('color')!r}")
        try:
            self.scale = float(card.get("scale", 1.0))
            self.mean = np.asarray(card.get("mean", [0.0, 0.0, 0.0]), np.float32).reshape(3)
            self.std = np.asarray(card.get("std", [1.0, 1.0, 1.0]), np.float32).reshape(3)
        except (TypeError, ValueError) as exc:
            raise CardError(f"card 'scale' / 'mean' / 'std' malformed: {exc}") from exc
        if np.any(self.std == 0):
            raise CardError("card 'std' must not contain 0")
        hw = t.shape[2:4] if self.layout == "NCHW" else t.shape[1:3]
        if all(isinstance(d, int) and d > 0 for d in hw):
            self.size = (int(hw[0]), int(hw[1]))
        elif card.get("input_size"):
            h, w = (int(v) for v in card["input_size"])
            self.size = (h, w)
        else:
            raise CardError(
                f"input {t.name!r} has a dynamic size {list(t.shape)}; set 'input_size: [H, W]' in the card"
            )
        self.identity = self.scale == 1.0 and not self.mean.any() and np.all(self.std == 1.0)
        self.dtype = np.float16 if t.dtype == "float16" else np.float32
        plain = self.identity and not self.bgr and self.layout == "NCHW"
        self._fast = Preprocessor(self.size) if plain and self.dtype == np.float32 else None

    def __call__(self, images: Sequence[np.ndarray], batch: int) -> np.ndarray:
        if self._fast is not None:  # raw RGB NCHW float32: the node's own preallocated path
            return self._fast(images, batch=batch)
        h, w = self.size
        n = max(batch, len(images))
        out = np.zeros((n, 3, h, w) if self.layout == "NCHW" else (n, h, w, 3), np.float32)
        for b, im in enumerate(images):
            im = check_image(im)
            im = resize_image(im, (h, w))
            if self.bgr:
                im = im[..., ::-1]
            x = im.astype(np.float32)
            if not self.identity:
                x = (x * self.scale - self.mean) / self.std
            out[b] = x.transpose(2, 0, 1) if self.layout == "NCHW" else x
        return out.astype(self.dtype, copy=False)
