"""Old vs new preprocess in one run: the staged resize against one cv2.resize call, per frame size.

On a shared, noisy machine two separate runs cannot be compared; so both paths
(``Preprocessor(staged=True)`` and ``Preprocessor(staged=False)``, core/preprocess.py) run on
the same frames in the same loop, alternating which goes first, and the ratio of their medians
is the figure to quote. ``panoptic-ros bench --sizes`` reports it per size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from panoptic_ros.core.preprocess import Preprocessor


def network_input_size(segmenter: Any) -> tuple[int, int] | None:
    """(h, w) of the model's image input when it is static (NCHW or NHWC), else None."""
    from panoptic_ros.families.image_input import image_input

    family = getattr(segmenter, "family", None)
    sig = getattr(family, "signature", None)
    if sig is None:
        return None
    t = sig.input("image") or image_input(sig, {})
    if t is None or len(t.shape) != 4:
        return None
    hw = t.shape[2:4] if t.shape[1] == 3 else t.shape[1:3]
    if all(isinstance(d, int) and d > 0 for d in hw):
        return int(hw[0]), int(hw[1])
    return None


def compare(
    frames: Sequence[np.ndarray], input_size: tuple[int, int], iterations: int, warmup: int = 3
) -> dict[str, float]:
    """Median ms per frame of the staged and the single-call preprocess, and their ratio.

    Returns ``{"pre_ms", "pre_single_ms", "pre_speedup"}`` (speedup = single / staged; 1.0
    where both take the same path, e.g. integer factors).
    """
    new, old = Preprocessor(input_size), Preprocessor(input_size, staged=False)
    t_new: list[float] = []
    t_old: list[float] = []
    clock = time.perf_counter
    for i in range(warmup + max(1, iterations)):
        im = frames[i % len(frames)]
        order = ((new, t_new), (old, t_old)) if i % 2 == 0 else ((old, t_old), (new, t_new))
        for pre, acc in order:
            t0 = clock()
            pre([im])
            if i >= warmup:
                acc.append((clock() - t0) * 1e3)
    a, b = float(np.median(t_new)), float(np.median(t_old))
    return {"pre_ms": a, "pre_single_ms": b, "pre_speedup": b / a if a > 0 else float("nan")}
