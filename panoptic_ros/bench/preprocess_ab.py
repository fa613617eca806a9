"""Old vs new resizing in one run, per frame size: the staged preprocess against one cv2.resize
call, and the separable label upsampling against one cv2 INTER_NEAREST call per map.

On a shared, noisy machine two separate runs cannot be compared; so both paths
(``Preprocessor(staged=True)`` / ``Preprocessor(staged=False)``; ``labels_to_input`` / one
``cv2.resize``, core/preprocess.py) run on the same data in the same loop, alternating which
goes first, and the ratio of their medians is the figure to quote. ``panoptic-ros bench
--sizes`` reports both per size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from panoptic_ros.core.preprocess import Preprocessor, labels_to_input


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


def _interleaved(
    new: Callable[[int], Any], old: Callable[[int], Any], iterations: int, warmup: int
) -> tuple[float, float]:
    """Median ms of ``new(i)`` and ``old(i)``, run alternately (which goes first alternates too)."""
    t_new: list[float] = []
    t_old: list[float] = []
    clock = time.perf_counter
    for i in range(warmup + max(1, iterations)):
        order = ((new, t_new), (old, t_old)) if i % 2 == 0 else ((old, t_old), (new, t_new))
        for fn, acc in order:
            t0 = clock()
            fn(i)
            if i >= warmup:
                acc.append((clock() - t0) * 1e3)
    return float(np.median(t_new)), float(np.median(t_old))


def compare(
    frames: Sequence[np.ndarray], input_size: tuple[int, int], iterations: int, warmup: int = 3
) -> dict[str, float]:
    """Median ms per frame of the staged and the single-call preprocess, and their ratio; the
    same for upsampling three label maps (uint8, uint16, int32, as ``build_result`` does) from
    ``input_size`` back to the frame size.

    Returns ``pre_ms``, ``pre_single_ms``, ``pre_speedup`` (single / staged; 1.0 where both
    take the same path, e.g. integer factors) and ``up_ms``, ``up_single_ms``, ``up_speedup``.
    """
    new, old = Preprocessor(input_size), Preprocessor(input_size, staged=False)
    a, b = _interleaved(
        lambda i: new([frames[i % len(frames)]]),
        lambda i: old([frames[i % len(frames)]]),
        iterations,
        warmup,
    )
    H, W = frames[0].shape[:2]
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 200, input_size).astype(t) for t in (np.uint8, np.uint16, np.int32)]
    c, d = _interleaved(
        lambda i: [labels_to_input(m, (H, W)) for m in maps],
        lambda i: [cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST) for m in maps],
        iterations,
        warmup,
    )
    nan = float("nan")
    return {
        "pre_ms": a,
        "pre_single_ms": b,
        "pre_speedup": b / a if a > 0 else nan,
        "up_ms": c,
        "up_single_ms": d,
        "up_speedup": d / c if c > 0 else nan,
    }
