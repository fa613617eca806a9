"""Plain data types shared by the pipeline, the node and the tools.

Frozen dataclasses so a result handed to a publisher thread cannot be mutated by the
worker that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: value of the semantic image where no class applies (mono8 images; 65535 for 16-bit)
UNLABELED = 255
#: value of the panoptic image where no segment applies
VOID = -1


@dataclass(frozen=True)
class Instance:
    """One countable object. ``id`` is the value of its pixels in the instance image.

    ``bbox`` is ``(x0, y0, x1, y1)`` in input-image pixels, x1/y1 exclusive, so
    ``width = x1 - x0``; ``centroid`` is ``(x, y)`` of the mask's pixel centres.
    With tracking (core/tracking.py) ``id`` is the track id, stable over frames; ``age`` is
    the frames since the track was created (0 on its first frame) and ``hits`` the frames it
    was detected in (>= 1). Untracked results keep the defaults 0 and 0 (hits 0 = no tracker),
    so their messages are what they were before tracking existed.
    """

    id: int
    class_id: int
    score: float
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]
    age: int = 0
    hits: int = 0


@dataclass(frozen=True)
class PanopticResult:
    """Everything one frame yields, at the INPUT image's resolution.

    semantic: (H, W) uint8 class ids (uint16 if > 254 classes), UNLABELED where none.
    instance: (H, W) uint16, 0 = stuff / none, 1..N = Instance.id.
    panoptic: (H, W) int32, class_id * label_divisor + instance_id, VOID where none.
    timings:  milliseconds per stage (keys: preprocess, infer, postprocess).
    """

    semantic: np.ndarray
    instance: np.ndarray
    panoptic: np.ndarray
    instances: tuple[Instance, ...]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Prepared:
    """Frames made ready for one backend call.

    feeds: ONNX input name -> batch array (the batch padded to the backend's fixed batch size).
    image_hw: each real frame's (H, W), in order.
    transforms: per frame, whatever the family needs to map network pixels back to the frame
        (scale and padding for a letterbox, the resized size for a plain resize, ...).
    """

    feeds: dict[str, np.ndarray]
    image_hw: list[tuple[int, int]]
    transforms: list[Any] = field(default_factory=list)


@dataclass
class Segments:
    """One frame's decoded panoptic segmentation at the frame's resolution (H, W).

    semantic: (H, W) int32 class index into the taxonomy; -1 = void / unlabeled (never class 0).
    instance: (H, W) int32; 0 = no instance, k >= 1 = the k-th instance.
    classes: (N,) int32 class index of instance k at [k - 1].
    scores: (N,) float32 confidence of instance k at [k - 1].
    Stuff pixels carry their class in ``semantic`` and 0 in ``instance``.
    """

    semantic: np.ndarray
    instance: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
