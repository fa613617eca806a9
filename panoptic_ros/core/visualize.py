"""Colouring of panoptic results (numpy + OpenCV array ops; no ROS).

``overlay``          class colours blended over the camera image, per-instance shades and a
                     1-pixel instance boundary, for RViz.
``panoptic_to_rgb``  lossless (H, W, 3) uint8 form of the panoptic map for the
                     ``panoptic_rgb`` topic; ``rgb_to_panoptic`` inverts it.

panoptic_rgb encoding (COCO panoptic PNG form, same as ``coco_panoptic.py``)::

    R + 256 G + 256^2 B  ==  panoptic + 1        (void -1 -> 0, 0, 0)

The +1 is what makes the form lossless: with the project's encoding
``class_id * label_divisor + instance_id`` a stuff segment of class 0 (``road``) has id 0,
which COCO reserves for void. Panoptic ids must lie in -1 .. 2^24 - 2.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import UNLABELED, VOID

#: largest panoptic id panoptic_to_rgb can store (24 bits, minus the +1 offset)
MAX_PANOPTIC_ID = (1 << 24) - 2
#: colour of instance boundary pixels in the overlay
BOUNDARY_COLOR = (255, 255, 255)


#: instance ids are shaded modulo this period (consecutive ids always differ)
SHADE_PERIOD = 64


def _shade_factors() -> np.ndarray:
    """(SHADE_PERIOD,) brightness factor in 1/256 units per ``id % SHADE_PERIOD``; 0 -> 256 (unchanged).

    Golden-ratio sequence so consecutive ids (adjacent cars) differ strongly: 0.55 .. 1.25;
    factors above 1 blend towards white.
    """
    k = np.arange(SHADE_PERIOD, dtype=np.float64)
    f = np.round((0.55 + 0.70 * ((k * 0.6180339887498949) % 1.0)) * 256).astype(np.int64)
    f[0] = 256
    return f


@lru_cache(maxsize=4)
def _palette(taxonomy: Taxonomy, n_sem: int) -> np.ndarray:
    """(n_sem * SHADE_PERIOD, 4) uint8: RGB + "is a class" flag for key ``sem * SHADE_PERIOD + id % SHADE_PERIOD``.

    Semantic values without a class (unlabeled) get black and flag 0.
    """
    base = np.zeros((n_sem, 3), dtype=np.int64)
    flag = np.zeros(n_sem, dtype=np.uint8)
    for c in taxonomy.classes:
        if c.id < n_sem:
            base[c.id] = c.color
            flag[c.id] = 1
    f = _shade_factors()[None, :, None]  # (1, P, 1)
    c = base[:, None, :]  # (n_sem, 1, 3)
    dark = (c * np.minimum(f, 256)) >> 8
    shaded = dark + (((255 - dark) * (np.maximum(f, 256) - 256)) >> 8)
    pal = np.zeros((n_sem, SHADE_PERIOD, 4), dtype=np.uint8)
    pal[..., :3] = shaded
    pal[..., 3] = flag[:, None]
    pal = pal.reshape(-1, 4)
    pal.flags.writeable = False
    return pal


def colorize(
    semantic: np.ndarray, instance: np.ndarray | None, taxonomy: Taxonomy
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 label colours and (H, W) bool labelled mask.

    Class colours from the taxonomy; pixels of instance k > 0 get the class colour scaled by
    a factor that depends on ``k % SHADE_PERIOD`` (brighter factors blend towards white), so
    neighbouring instances of one class differ. Semantic values outside the taxonomy
    (255 / 65535 unlabeled) are unlabelled (colour black). One table gather per pixel.
    """
    if semantic.ndim != 2:
        raise ValueError(f"semantic must be (H, W), got shape {semantic.shape}")
    if semantic.dtype == np.uint8:
        n_sem, sem = 256, semantic
    else:  # uint16 (> 254 classes) or any other integer type: unlabeled -> num_classes
        n = taxonomy.num_classes
        n_sem = n + 1
        sem = np.where((semantic >= 0) & (semantic < n), semantic, n)
    key = sem.astype(np.uint32 if n_sem * SHADE_PERIOD > 65536 else np.uint16)
    key *= SHADE_PERIOD
    if instance is not None:
        if instance.shape != semantic.shape:
            raise ValueError(f"instance shape {instance.shape} != semantic shape {semantic.shape}")
        key |= (instance & (SHADE_PERIOD - 1)).astype(key.dtype, copy=False)
    rgba = np.take(_palette(taxonomy, n_sem), key, axis=0)
    color = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB) if rgba.size else rgba[..., :3].copy()
    labelled = np.ascontiguousarray(rgba[..., 3]).view(bool)
    return color, labelled


def instance_boundary(instance: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of an instance (id > 0) whose left, right, upper or lower neighbour differs."""
    inst = instance
    b = np.zeros(inst.shape, dtype=bool)
    dx = inst[:, 1:] != inst[:, :-1]
    dy = inst[1:, :] != inst[:-1, :]
    b[:, 1:] |= dx
    b[:, :-1] |= dx
    b[1:, :] |= dy
    b[:-1, :] |= dy
    b &= inst > 0
    return b


def overlay(
    image_rgb: np.ndarray,
    semantic: np.ndarray,
    instance: np.ndarray | None,
    taxonomy: Taxonomy,
    alpha: float = 0.5,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB: ``round(image * (1 - alpha) + colour * alpha)`` on labelled pixels.

    image_rgb: (H, W, 3) uint8 RGB (the input frame); semantic: (H, W) uint8/uint16 class ids
    (UNLABELED -> image unchanged); instance: (H, W) uint16 or None. Instance pixels get a
    per-instance shade, and instance borders a 1-pixel white line (drawn inside each instance
    where two differ), so adjacent objects of one class stay distinguishable.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"image_rgb must be (H, W, 3) uint8, got {image_rgb.shape} {image_rgb.dtype}"
        )
    if semantic.shape != image_rgb.shape[:2]:
        raise ValueError(f"semantic shape {semantic.shape} != image shape {image_rgb.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    color, labelled = colorize(semantic, instance, taxonomy)
    if image_rgb.size == 0:
        return image_rgb.copy()
    out = cv2.addWeighted(image_rgb, 1.0 - alpha, color, alpha, 0.0)
    unlabelled = np.logical_not(labelled)
    cv2.copyTo(
        image_rgb, unlabelled.view(np.uint8), out
    )  # in place: unlabelled pixels keep the image
    if instance is not None:
        edge = instance_boundary(instance)
        solid = np.empty_like(out)
        solid[...] = BOUNDARY_COLOR
        cv2.copyTo(solid, edge.view(np.uint8), out)
    return out


def panoptic_to_rgb(panoptic: np.ndarray) -> np.ndarray:
    """(H, W) int panoptic ids -> (H, W, 3) uint8 with ``R + 256 G + 256^2 B = panoptic + 1``.

    VOID (-1) -> (0, 0, 0). Raises ValueError for ids < -1 or > MAX_PANOPTIC_ID.
    """
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic must be (H, W), got shape {panoptic.shape}")
    if panoptic.size:
        lo, hi = int(panoptic.min()), int(panoptic.max())
        if lo < VOID or hi > MAX_PANOPTIC_ID:
            raise ValueError(f"panoptic ids must lie in {VOID}..{MAX_PANOPTIC_ID}, got {lo}..{hi}")
    if panoptic.size == 0:
        return np.zeros((*panoptic.shape, 3), dtype=np.uint8)
    v = panoptic.astype("<i4")  # copy, little-endian: the three low bytes are R, G, B
    v += 1
    return cv2.cvtColor(v.view(np.uint8).reshape(*panoptic.shape, 4), cv2.COLOR_RGBA2RGB)


def rgb_to_panoptic(rgb: np.ndarray) -> np.ndarray:
    """Inverse of ``panoptic_to_rgb``: (H, W, 3) uint8 -> (H, W) int32, (0, 0, 0) -> VOID."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if rgb.size == 0:
        return np.zeros(rgb.shape[:2], dtype=np.int32)
    rgba = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)  # alpha byte = 255
    v = rgba.view("<i4").reshape(rgb.shape[:2])
    v &= 0xFFFFFF
    v -= 1
    return v.astype(np.int32, copy=False)


__all__ = [
    "BOUNDARY_COLOR",
    "MAX_PANOPTIC_ID",
    "UNLABELED",
    "colorize",
    "instance_boundary",
    "overlay",
    "panoptic_to_rgb",
    "rgb_to_panoptic",
]
