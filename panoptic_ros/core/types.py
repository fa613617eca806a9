"""Plain data types shared by the pipeline, the node and the tools.

Frozen dataclasses so a result handed to a publisher thread cannot be mutated by the
worker that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """

    id: int
    class_id: int
    score: float
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]


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
