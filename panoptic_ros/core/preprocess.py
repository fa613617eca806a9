"""Camera frame -> network input, and network label maps -> input resolution.

Resize policy: **stretch** (not letterbox). Any (H, W, 3) frame is resized straight to the
network size (default 240x320), changing the aspect ratio when the camera's differs. We chose
stretch because (a) every network pixel carries image content (letterboxing a 16:9 frame into
4:3 wastes 25% of the compute on padding), (b) the inverse mapping is a plain nearest-neighbour
resize with no offsets to track, and (c) the default model is trained on scenes of several
camera aspect ratios (4:3, 16:9, 16:10, 3:2, 5:4) stretched to its input size, so it has seen
this distortion. Downscaling uses INTER_AREA (anti-aliased), upscaling INTER_LINEAR.

Staged downscale (``resize_image``): OpenCV's INTER_AREA is fast only for integer factors (2x2 is
a SIMD special case: ~0.3 ms for a 1024x2048 frame) and slow for the general fractional case
that 1024x2048 -> 240x320 needs (4.27 x 6.4: 7-9 ms, a scalar loop over every source pixel).
So a frame that is not an integer multiple of the network size is first halved (2x2
INTER_AREA: rounded box means) while both sides stay even and at least twice the target, and
only the last, small step (scale < 2) is a general INTER_AREA. That is not bit-identical to
one INTER_AREA call: the composite kernel (a 2^k box, then a short area kernel) is slightly
wider. test/test_preprocess_resize.py bounds the difference (smooth content: max 2 grey
levels, mean < 0.5; synthetic scenes: mean < 2, single edge pixels more); the PQ effect, with
its command, is in docs/performance.md ("High resolution"). Integer factors (480x640,
720x1280, 960x1280, 4K UHD), odd sides and upscaling take the single cv2 call as before, so
their outputs are unchanged. ``STAGED = False`` (``panoptic-ros eval --single-resize``)
restores the single call everywhere.

Label maps go back by nearest neighbour (exact: every output pixel copies one network pixel;
no class mixing), separably (``labels_to_input``), bit-identical to ``cv2.resize(INTER_NEAREST)``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB frame (H, W >= 1); returns it C-contiguous."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W, 3) with H, W >= 1, got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


#: Process-wide default for ``staged``: ``panoptic-ros eval --single-resize`` sets it False to
#: score the same scenes with the single cv2 call (the PQ effect in docs/performance.md).
STAGED = True


def interpolation(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """The cv2 flag for resizing src_hw -> dst_hw: INTER_AREA when shrinking both axes, else INTER_LINEAR."""
    shrink = src_hw[0] >= dst_hw[0] and src_hw[1] >= dst_hw[1]
    return cv2.INTER_AREA if shrink else cv2.INTER_LINEAR


def resize_steps(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The (h, w) sizes ``resize_image`` passes through after ``src_hw``, ending with ``dst_hw``.

    Halvings (2x2 INTER_AREA, OpenCV's SIMD fast path) while both sides are even and at least
    twice the target; none when the frame is an integer multiple of the target on both axes
    (one cv2 call is then both fast and today's exact result), when an axis is upscaled, or when
    a side is odd. ``[]`` when the sizes are equal.
    """
    (h, w), (H, W) = (int(src_hw[0]), int(src_hw[1])), (int(dst_hw[0]), int(dst_hw[1]))
    if (h, w) == (H, W):
        return []
    steps: list[tuple[int, int]] = []
    if not (h % H == 0 and w % W == 0):
        while h % 2 == 0 and w % 2 == 0 and h >= 2 * H and w >= 2 * W:
            h, w = h // 2, w // 2
            steps.append((h, w))
    if (h, w) != (H, W):
        steps.append((H, W))
    return steps


def resize_image(
    image: np.ndarray,
    dst_hw: tuple[int, int],
    dst: np.ndarray | None = None,
    scratch: dict[tuple[int, int], np.ndarray] | None = None,
    staged: bool | None = None,
) -> np.ndarray:
    """(h, w, C) uint8 -> (H, W, C): the staged resize of the module docstring.

    ``dst`` (H, W, C) receives the result when given; ``scratch`` maps intermediate (h, w) to
    reusable arrays (filled on first use) so a steady stream of frames allocates nothing.
    ``staged=False`` (default: ``STAGED``): always the single cv2 call. Returns ``image``
    itself when the sizes are already equal.
    """
    H, W = int(dst_hw[0]), int(dst_hw[1])
    if image.shape[:2] == (H, W):
        return image
    steps = resize_steps(image.shape[:2], (H, W)) if (STAGED if staged is None else staged) else []
    steps = steps or [(H, W)]
    flag = interpolation(image.shape[:2], (H, W))
    cur = image
    for h, w in steps[:-1]:
        buf = None
        if scratch is not None:
            buf = scratch.get((h, w))
            if buf is None or buf.shape[2:] != cur.shape[2:] or buf.dtype != cur.dtype:
                buf = scratch[(h, w)] = np.empty((h, w, *cur.shape[2:]), cur.dtype)
        cur = cv2.resize(cur, (w, h), dst=buf, interpolation=cv2.INTER_AREA)
    return cv2.resize(cur, (W, H), dst=dst, interpolation=flag)


def to_nchw(images: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """List of (h, w, 3) uint8 at the network size -> (B, 3, h, w) float32, raw 0..255.

    Normalisation happens inside the graph. ``out`` may be a preallocated buffer to fill.
    """
    if len(images) == 0:
        raise ValueError("to_nchw needs at least one image")
    h, w = images[0].shape[:2]
    if out is None:
        out = np.empty((len(images), 3, h, w), np.float32)
    for b, im in enumerate(images):
        # cv2.split makes 3 contiguous uint8 planes; a contiguous uint8 -> float32 copy per plane is
        # about twice as fast as the strided out[b] = im.transpose(2, 0, 1) (same values)
        for c, plane in enumerate(cv2.split(im)):
            np.copyto(out[b, c], plane)
    return out


class Preprocessor:
    """Resize + layout for a fixed network input size (h, w).

    Per frame: ``resize_image`` (INTER_AREA down, staged for large fractional factors /
    INTER_LINEAR up, as the model was trained; ``staged=False``: always one ``cv2.resize``,
    the reference the benchmark and tests compare with; None: the module's ``STAGED``), one
    ``cv2.split`` into three uint8 planes and one uint8 -> float32 copy per plane into the
    network input buffer. Every destination is preallocated: fresh 0.2-0.9 MB arrays per frame cost more in page faults
    than the copies themselves (0.26 ms vs 0.55 ms per VGA frame with fresh arrays here).

    The returned array is reused: it stays valid until the next call **from the same thread**
    (buffers are per thread, so concurrent callers never share one). Every backend consumes its
    input within ``infer``, so the Segmenter never holds it longer.
    """

    def __init__(self, input_size: tuple[int, int], staged: bool | None = None) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.staged = staged  # None: the module's STAGED at each call
        self._local = threading.local()

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """This thread's (n, 3, h, w) float32 input, (h, w, 3) uint8 resize target and 3 uint8 planes."""
        loc = self._local
        if not hasattr(loc, "inputs"):
            h, w = self.input_size
            loc.inputs = {}
            loc.resized = np.empty((h, w, 3), np.uint8)
            loc.planes = [np.empty((h, w), np.uint8) for _ in range(3)]
        if n not in loc.inputs:
            loc.inputs[n] = np.zeros((n, 3, *self.input_size), np.float32)
        return loc.inputs[n], loc.resized, loc.planes

    def _scratch(self) -> dict[tuple[int, int], np.ndarray]:
        """This thread's intermediate buffers of the staged resize, by size. A few cameras of
        different sizes share one Segmenter, so they are kept side by side; past 8 sizes
        (a stream of ever-changing sizes) they are dropped rather than piled up."""
        loc = self._local
        if not hasattr(loc, "scratch") or len(loc.scratch) > 8:
            loc.scratch = {}
        return loc.scratch

    def __call__(self, images: Sequence[np.ndarray], batch: int | None = None) -> np.ndarray:
        """Frames of any sizes -> (max(batch, len), 3, h, w) float32; extra batch rows are zero padding."""
        if len(images) == 0:
            raise ValueError("Preprocessor needs at least one image")
        h, w = self.input_size
        n = max(len(images), batch or 0)
        out, resized, planes = self._buffers(n)
        for b, im in enumerate(images):
            im = check_image(im)
            if im.shape[:2] == (h, w):
                src = im
            else:
                src = resize_image(
                    im, (h, w), dst=resized, scratch=self._scratch(), staged=self.staged
                )
            cv2.split(src, planes)
            for c in range(3):
                np.copyto(out[b, c], planes[c])
        out[len(images) :] = 0.0  # padding rows may hold an earlier, fuller batch
        return out


@lru_cache(maxsize=32)
def _nearest_rows(h: int, H: int) -> np.ndarray:
    """Source row of each of H output rows, as cv2 INTER_NEAREST picks it (floor(y * h / H))."""
    ys = np.minimum((np.arange(H, dtype=np.int64) * h) // H, h - 1).astype(np.intp)
    ys.setflags(write=False)
    return ys


def labels_to_input(label: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) integer label map -> (H, W) same dtype, nearest neighbour (exact, no class mixing).

    Separable, and equal to one ``cv2.resize(INTER_NEAREST)``: the columns at the network's
    height (cv2, small), then whole rows copied by ``np.take`` (memcpy per row). One cv2 call
    gathers every output pixel on its own: 1.4-4.1x slower for the three maps of a 1024x2048
    frame (``bench --sizes``, docs/performance.md "High resolution").
    """
    H, W = int(input_hw[0]), int(input_hw[1])
    if label.shape == (H, W):
        return label
    h, w = label.shape
    if w == W:
        wide = label
    elif label.dtype in (np.uint8, np.uint16, np.int16, np.int32, np.float32):
        wide = cv2.resize(label, (W, h), interpolation=cv2.INTER_NEAREST)
    else:  # dtypes OpenCV cannot resize (e.g. int64): index arithmetic, the same columns
        wide = np.take(label, np.minimum((np.arange(W) * w) // W, w - 1), axis=1)
    return np.take(wide, _nearest_rows(h, H), axis=0) if h != H else wide
