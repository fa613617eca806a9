"""Property tests: any input either decodes correctly or raises ImageDecodeError naming the fault.

An independent oracle decides, from the declared fields alone, which fault (if any) an input
has, in the documented order: encoding, size, odd width (YUV), step, truncated data. Valid
inputs are compared with rosbags-image on the unpadded rows (or a numpy reconstruction).
Never another exception type, and tracemalloc bounds what numpy allocates by the bytes
actually supplied (a huge declared size with short data must cost nothing).

Run counts are printed at the end (``inputs tried: ...``).
"""

from __future__ import annotations

import array
import sys
import tracemalloc
from collections import Counter

import cv2
import numpy as np
import pytest
from encoding_cases import CASES, RbCompressed, RbHeader, RbImage, RbTime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rosbags.image import message_to_cvimage

from panoptic_ros.core import encodings as enc
from panoptic_ros.core.encodings import ImageDecodeError

# encoding -> (bytes per channel, channels, rosbags-image encoding for the same bytes, tolerance)
ORACLE = {e: (np.dtype(dtype).itemsize, ch, ref, tol) for e, (dtype, ch, ref, tol) in CASES.items()}
INVALID_NAMES = [
    "",
    "RGB8",
    "rgb 8",
    "rgb8 ",
    "32FC1",
    "16SC1",
    "nv12",
    "bayer_rggb",
    "jpeg",
    "mono32",
    "8UC2",
]

COUNTS: Counter = Counter()
MAX_SMALL = 12  # sides of images actually built


def _weighted(*pairs):
    """A strategy drawing from strategy ``s`` with relative weight ``n`` for each (n, s)."""
    branches = [s for n, s in pairs for _ in range(n)]
    return st.integers(0, len(branches) - 1).flatmap(lambda i: branches[i])


encodings_st = _weighted(
    (8, st.sampled_from(sorted(ORACLE))),
    (1, st.sampled_from(INVALID_NAMES)),
    (1, st.text(max_size=12)),
)
side_st = _weighted(
    (12, st.integers(1, MAX_SMALL)),
    (1, st.sampled_from([0, 1, 2, 3, 16384, 16385, 2**31 - 1, 2**32 - 1])),
    (1, st.integers(-5, 0)),
    (1, st.integers(MAX_SMALL + 1, 2**32 - 1)),
)


def expected_fault(encoding, h, w, step, nbytes_data):
    """The fault the decoder must report, or None for a valid input (documented order)."""
    if encoding not in ORACLE:
        return "encoding"
    if h <= 0 or w <= 0 or h > enc.MAX_SIDE or w > enc.MAX_SIDE or h * w > enc.MAX_PIXELS:
        return "size"
    nb, ch, _, _ = ORACLE[encoding]
    if ch == 2 and w % 2:
        return "odd_width"
    if step < w * ch * nb:
        return "step"
    if nbytes_data < step * h:
        return "truncated"
    return None


def as_buffer(kind, data: bytes):
    return {
        "bytes": lambda: data,
        "bytearray": lambda: bytearray(data),
        "memoryview": lambda: memoryview(data),
        "array": lambda: array.array("B", data),
        "ndarray": lambda: np.frombuffer(data, np.uint8).copy(),
    }[kind]()


def reference(encoding, h, w, step, big, data: bytes) -> np.ndarray:
    """rosbags-image on the compact rows (it ignores step)."""
    nb, ch, ref_enc, _ = ORACLE[encoding]
    row = w * ch * nb
    compact = np.frombuffer(data, np.uint8)[: step * h].reshape(h, step)[:, :row]
    msg = RbImage(
        header=RbHeader(stamp=RbTime(sec=0, nanosec=0), frame_id=""),
        height=h,
        width=w,
        encoding=ref_enc,
        is_bigendian=big,
        step=row,
        data=np.ascontiguousarray(compact).reshape(-1),
    )
    return np.asarray(message_to_cvimage(msg, "rgb8"))


@st.composite
def raw_inputs(draw):
    encoding = draw(encodings_st)
    h = draw(side_st)
    w = draw(side_st)
    nb, ch, _, _ = ORACLE.get(encoding, (1, 3, None, 0))
    if draw(st.booleans()) and ch == 2 and w > 1:  # bias YUV towards even widths
        w -= w % 2
    row = max(w, 0) * ch * nb
    step_kind = draw(
        st.sampled_from(["equal", "equal", "padded", "padded", "smaller", "odd", "random", "huge"])
    )
    step = {
        "equal": row,
        "padded": row + draw(st.integers(1, 17)),
        "smaller": row - draw(st.integers(1, 5)),
        "odd": row + 1 - (row % 2),
        "random": draw(st.integers(0, 200)),
        "huge": draw(st.integers(2**31, 2**32 - 1)),
    }[step_kind]
    small = 0 < h <= MAX_SMALL and 0 < w <= MAX_SMALL and 0 <= step <= 400
    need = step * h if small else 0
    len_kind = draw(st.sampled_from(["exact", "exact", "exact", "short", "long", "tiny"]))
    n = {
        "exact": need,
        "short": max(need - draw(st.integers(1, 40)), 0),
        "long": need + draw(st.integers(1, 64)),
        "tiny": draw(st.integers(0, 16)),
    }[len_kind]
    data = (
        draw(st.binary(min_size=n, max_size=n))
        if n <= 64
        else np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        .integers(0, 256, n, dtype=np.uint8)
        .tobytes()
    )
    big = draw(st.booleans())
    kind = draw(st.sampled_from(["bytes", "bytearray", "memoryview", "array", "ndarray"]))
    return encoding, h, w, step, big, data, kind


def _run_bounded(fn, budget):
    """Call fn under tracemalloc; assert numpy/Python allocated at most ``budget`` bytes at peak."""
    tracemalloc.start()
    try:
        out = fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= budget, f"peak allocation {peak} bytes exceeds {budget}"
    return out


@settings(
    max_examples=700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw_inputs())
def test_decode_raw_property(inp):
    encoding, h, w, step, big, data, kind = inp
    COUNTS["raw"] += 1
    fault = expected_fault(encoding, h, w, step, len(data))
    budget = 64 * 1024 + 16 * len(data)  # output is at most 3 bytes per input byte (+ temporaries)
    try:
        out = _run_bounded(
            lambda: enc.decode_raw(encoding, h, w, step, big, as_buffer(kind, data)), budget
        )
    except ImageDecodeError as e:
        COUNTS[f"raw:{e.fault}"] += 1
        assert fault is not None, f"valid input rejected: {e}"
        assert e.fault == fault, (fault, str(e))
        assert str(e)
        return
    # any other exception type propagates and fails the test
    COUNTS["raw:ok"] += 1
    assert fault is None, f"expected fault {fault!r} but decoded"
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    ref = reference(encoding, h, w, step, big, data)
    tol = ORACLE[encoding][3]
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= tol


# -- compressed ----------------------------------------------------------------------------


def _sample_images():
    rng = np.random.default_rng(0)
    out = []
    for ext in (".jpg", ".png"):
        for shape in [(5, 7, 3), (16, 9, 3), (8, 8), (3, 4, 4)]:
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            if ext == ".jpg" and len(shape) == 3 and shape[2] == 4:
                img = img[..., :3]
            ok, buf = cv2.imencode(ext, img)
            assert ok
            out.append((ext, buf.tobytes(), img))
    return out


SAMPLES = _sample_images()
FORMATS = [
    "jpeg",
    "png",
    "",
    "JPEG",
    "rgb8; jpeg compressed bgr8",
    "bgr8; png compressed bgr8",
    "webp",
    "tiff",
    "16UC1; compressedDepth png",
    "compressedDepth",
]


@st.composite
def compressed_inputs(draw):
    fmt = draw(
        _weighted(
            (6, st.sampled_from(FORMATS[:6])),
            (1, st.sampled_from(FORMATS[6:])),
            (1, st.text(max_size=10)),
        )
    )
    how = draw(
        st.sampled_from(
            ["valid", "valid", "valid", "truncated", "mutated", "garbage", "magic+garbage", "empty"]
        )
    )
    idx = draw(st.integers(0, len(SAMPLES) - 1))
    ext, good, img = SAMPLES[idx]
    if how == "valid":
        data = good
    elif how == "truncated":
        data = good[: draw(st.integers(0, len(good) - 1))]
    elif how == "mutated":
        b = bytearray(good)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        data = bytes(b)
    elif how == "garbage":
        data = draw(st.binary(max_size=200))
    elif how == "magic+garbage":
        data = draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"])) + draw(
            st.binary(max_size=100)
        )
    else:
        data = b""
    kind = draw(st.sampled_from(["bytes", "array", "ndarray"]))
    return fmt, how, idx, data, kind


def _format_ok(fmt: str) -> bool:
    f = fmt.strip().lower()
    return "compresseddepth" not in f.replace(" ", "") and (
        not f or any(k in f for k in ("jpeg", "jpg", "png"))
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compressed_inputs())
def test_decode_compressed_property(inp):
    fmt, how, idx, data, kind = inp
    COUNTS["compressed"] += 1
    ext, good, img = SAMPLES[idx]
    # mutated headers may declare larger sizes: a tight max_pixels keeps every decode small
    max_px = 4096
    try:
        out = enc.decode_compressed(fmt, as_buffer(kind, data), max_pixels=max_px)
    except ImageDecodeError as e:
        COUNTS[f"compressed:{e.fault}"] += 1
        assert str(e)
        if not _format_ok(fmt):
            assert e.fault == "format"
        elif how == "valid":
            pytest.fail(f"valid {ext} rejected: {e}")
        else:
            assert e.fault in ("corrupt", "size")
        return
    COUNTS["compressed:ok"] += 1
    assert _format_ok(fmt), "unsupported format accepted"
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    assert out.shape[0] * out.shape[1] <= max_px
    if how == "valid":
        if img.ndim == 3 and ext == ".png":  # lossless colour: exact
            np.testing.assert_array_equal(out, img[..., 2::-1])
        elif img.ndim == 2 and ext == ".png":
            np.testing.assert_array_equal(out, np.repeat(img[..., None], 3, 2))
        elif img.ndim == 3:  # colour JPEG: the independent decoder agrees
            ref = message_to_cvimage(
                RbCompressed(
                    header=RbHeader(stamp=RbTime(sec=0, nanosec=0), frame_id=""),
                    format=fmt,
                    data=np.frombuffer(data, np.uint8),
                ),
                "rgb8",
            )
            np.testing.assert_array_equal(out, ref)
        else:
            assert out.shape[:2] == img.shape[:2]


def test_zz_report_counts(capsys):
    """Prints how many inputs the property tests tried (runs last in this file)."""
    with capsys.disabled():
        print("\ninputs tried:", dict(sorted(COUNTS.items())), file=sys.stderr)
    if COUNTS:  # absent when this test is selected alone
        assert COUNTS["raw"] > 0 and COUNTS["compressed"] > 0
