"""encodings.py against rosbags-image (an independent converter) and exact numpy reconstructions.

rosbags-image ignores ``step`` (it reads the buffer as if rows were unpadded), so the
reference is always computed from the compact message while our decoder reads the padded
one. Real sensor_msgs (rclpy) and rosbags message objects are both exercised.
"""

from __future__ import annotations

import array
import zlib

import cv2
import numpy as np
import pytest
from encoding_cases import CASES, RbCompressed, RbHeader, RbImage, RbTime
from rosbags.image import message_to_cvimage

from panoptic_ros.core import encodings as enc
from panoptic_ros.core.encodings import ImageDecodeError, ImageEncodeError


def test_cases_cover_every_supported_encoding():
    assert set(CASES) == set(enc.SUPPORTED_ENCODINGS)


def rb_header():
    return RbHeader(stamp=RbTime(sec=1, nanosec=2), frame_id="cam")


def native(encoding: str, h: int, w: int, rng) -> np.ndarray:
    dtype, ch, _, _ = CASES[encoding]
    shape = (h, w) if ch == 1 else (h, w, ch)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


def pack(arr: np.ndarray, step_pad: int, bigendian: bool) -> tuple[bytes, int]:
    """Row bytes of ``arr`` with ``step_pad`` junk bytes after each row -> (data, step)."""
    h = arr.shape[0]
    a = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    pad = np.full((h, step_pad), 0xAB, np.uint8)
    return np.hstack([rows, pad]).tobytes(), rows.shape[1] + step_pad


def reference(encoding: str, arr: np.ndarray, bigendian: bool) -> np.ndarray:
    """rosbags-image's rgb8 decode of the compact message (no padding)."""
    _, _, ref_enc, _ = CASES[encoding]
    data, step = pack(arr, 0, bigendian)
    msg = RbImage(
        header=rb_header(),
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=ref_enc,
        is_bigendian=bigendian,
        step=step,
        data=np.frombuffer(data, np.uint8),
    )
    return np.asarray(message_to_cvimage(msg, "rgb8"))


SIZES = [(1, 2), (2, 2), (3, 5), (7, 4), (31, 17), (48, 64)]


@pytest.mark.parametrize("encoding", sorted(CASES))
@pytest.mark.parametrize("bigendian", [False, True])
def test_decode_matches_rosbags_image(encoding, bigendian):
    rng = np.random.default_rng(zlib.crc32(f"{encoding}{bigendian}".encode()))
    _, ch, _, tol = CASES[encoding]
    for h, w in SIZES:
        if ch == 2 and w % 2:
            continue
        arr = native(encoding, h, w, rng)
        ref = reference(encoding, arr, bigendian)
        for pad in (0, 1, 3, 64):
            data, step = pack(arr, pad, bigendian)
            out = enc.decode_raw(encoding, h, w, step, bigendian, data)
            assert out.shape == (h, w, 3) and out.dtype == np.uint8
            diff = np.abs(out.astype(int) - ref.astype(int)).max()
            assert diff <= tol, (encoding, h, w, pad, diff)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "rgb16", "bgra16"])
def test_16bit_scaling_is_exact_rounding(encoding):
    """round(v * 255 / 65535), what cv_bridge's convertTo gives; numpy reconstruction."""
    rng = np.random.default_rng(3)
    arr = native(encoding, 9, 11, rng)
    for be in (False, True):
        data, step = pack(arr, 2, be)
        out = enc.decode_raw(encoding, 9, 11, step, be, data)
        s = ((arr.astype(np.int64) + 128) // 257).astype(np.uint8)
        if s.ndim == 2:
            s = np.repeat(s[..., None], 3, axis=2)
        elif encoding.startswith("bgr"):
            s = s[..., [2, 1, 0]]
        else:
            s = s[..., :3]
        np.testing.assert_array_equal(out, s)


def test_scale16_exhaustive():
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    np.testing.assert_array_equal(
        enc.scale16_to_8(v), ((v.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    )
    np.testing.assert_array_equal(
        enc.scale16_to_8(v), np.round(v * 255.0 / 65535.0).astype(np.uint8)
    )


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3"])
def test_plain_layouts_against_numpy(encoding):
    rng = np.random.default_rng(5)
    arr = native(encoding, 5, 7, rng)
    data, step = pack(arr, 5, False)
    out = enc.decode_raw(encoding, 5, 7, step, False, data)
    expect = {
        "rgb8": lambda a: a,
        "bgr8": lambda a: a[..., ::-1],
        "8UC3": lambda a: a[..., ::-1],
        "rgba8": lambda a: a[..., :3],
        "bgra8": lambda a: a[..., 2::-1],
        "mono8": lambda a: np.repeat(a[..., None], 3, axis=2),
    }[encoding](arr)
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_pattern_semantics(pattern, bits):
    """A flat colour mosaicked in ``pattern`` demosaics back to that colour (independent of OpenCV's naming)."""
    h, w = 10, 12
    rgb = {"r": 200, "g": 100, "b": 30}
    scale = 257 if bits == 16 else 1
    m = np.zeros((h, w), np.uint16 if bits == 16 else np.uint8)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        m[dy::2, dx::2] = rgb[pattern[k]] * scale
    data, step = pack(m, 0, False)
    out = enc.decode_raw(f"bayer_{pattern}{bits}", h, w, step, False, data)
    np.testing.assert_array_equal(
        out[2:-2, 2:-2], np.broadcast_to([200, 100, 30], (h - 4, w - 4, 3))
    )


def test_yuv_semantics():
    """UYVY vs YUYV byte order: Y=200, U=V=128 is grey 200 either way; Y differs per pixel."""
    h, w = 2, 4
    uyvy = np.array([[128, 50, 128, 220] * (w // 2)] * h, np.uint8)
    yuyv = np.array([[50, 128, 220, 128] * (w // 2)] * h, np.uint8)
    a = enc.decode_raw("uyvy", h, w, 2 * w, False, uyvy.tobytes())
    b = enc.decode_raw("yuyv", h, w, 2 * w, False, yuyv.tobytes())
    np.testing.assert_array_equal(a, b)
    assert abs(int(a[0, 0, 0]) - int(a[0, 1, 0])) > 100  # Y 50 vs 220 -> dark vs bright
    assert np.ptp(a[0, 0]) <= 1  # neutral chroma -> grey


def test_rgb8_and_mono8_are_zero_copy_views():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    data, step = pack(img, 4, False)
    buf = bytearray(data)
    out = enc.decode_raw("rgb8", 6, 5, step, False, buf)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    assert not out.flags.writeable
    np.testing.assert_array_equal(out, img)
    m = enc.raw_to_array("mono8", 6, 15, step, False, buf)
    assert np.shares_memory(m, np.frombuffer(buf, np.uint8)) and m.shape == (6, 15)
    # array.array (rclpy's storage) and numpy (rosbags') buffers are viewed, not copied
    aa = array.array("B", data)
    assert np.shares_memory(
        enc.decode_raw("rgb8", 6, 5, step, False, aa), np.frombuffer(aa, np.uint8)
    )
    nd = np.frombuffer(data, np.uint8).copy()
    assert np.shares_memory(enc.decode_raw("rgb8", 6, 5, step, False, nd), nd)
    # OpenCV takes the row-strided read-only view as it is
    assert cv2.resize(out, (10, 12)).shape == (12, 10, 3)


def test_raw_to_array_native_16bit():
    arr = np.array([[1, 2, 65535], [256, 0, 4660]], np.uint16)
    for be in (False, True):
        for pad in (0, 1):  # odd step: unaligned rows are copied to an aligned native array
            data, step = pack(arr, pad, be)
            out = enc.raw_to_array("mono16", 2, 3, step, be, data)
            assert out.dtype == np.uint16 and out.dtype.isnative and out.flags.aligned
            np.testing.assert_array_equal(out, arr)


def test_longer_data_is_accepted():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = enc.decode_raw("rgb8", 2, 3, 9, False, img.tobytes() + b"\x00" * 100)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "args, fault, words",
    [
        (
            ("rgb9", 2, 2, 6, False, b"\0" * 12),
            "encoding",
            ["unknown", "rgb9", "bgr8", "bayer_rggb8"],
        ),
        ((None, 2, 2, 6, False, b"\0" * 12), "encoding", ["encoding"]),
        (("rgb8", 0, 2, 6, False, b""), "size", ["height", "0"]),
        (("rgb8", 2, 0, 6, False, b""), "size", ["width", "0"]),
        (("rgb8", 2, 16385, 49155, False, b""), "size", ["width", "16384"]),
        (("mono8", 16384, 16385, 16385, False, b""), "size", ["16384"]),
        (("rgb8", 2, -1, 6, False, b""), "size", ["width"]),
        (("rgb8", 2, 2, 5, False, b"\0" * 12), "step", ["step 5", "6"]),
        (("mono16", 2, 3, 5, False, b"\0" * 12), "step", ["step 5", "6"]),
        (("rgb8", 2, 2, 6, False, b"\0" * 11), "truncated", ["truncated", "11", "12"]),
        (("rgb8", 4000, 4000, 12000, False, b"\0" * 10), "truncated", ["truncated"]),
        (("yuyv", 2, 3, 6, False, b"\0" * 12), "odd_width", ["even width", "3"]),
        (("uyvy", 2, 3, 6, False, b"\0" * 12), "odd_width", ["even width"]),
        (("rgb8", 1, 1, 3, False, "abc"), "data_type", ["bytes-like"]),
        (("rgb8", 1, 1, 3, False, None), "data_type", ["bytes-like"]),
        (("rgb8", 1.5, 1, 3, False, b"abc"), "size", ["height"]),
    ],
)
def test_decode_errors_name_the_fault(args, fault, words):
    with pytest.raises(ImageDecodeError) as ei:
        enc.decode_raw(*args)
    assert ei.value.fault == fault
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))
    assert isinstance(ei.value, ValueError)


# -- compressed --------------------------------------------------------------------------


def _rb_compressed(fmt, data):
    return RbCompressed(header=rb_header(), format=fmt, data=np.frombuffer(data, np.uint8))


@pytest.mark.parametrize(
    "ext, fmt",
    [
        (".jpg", "jpeg"),
        (".png", "png"),
        (".jpg", "rgb8; jpeg compressed bgr8"),
        (".png", "bgr8; png compressed bgr8"),
        (".jpg", ""),
    ],
)
def test_compressed_matches_rosbags_image(ext, fmt):
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), (5, 5), 0)
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    data = buf.tobytes()
    out = enc.decode_compressed(fmt, data)
    ref = np.asarray(message_to_cvimage(_rb_compressed(fmt, data), "rgb8"))
    np.testing.assert_array_equal(out, ref)
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)  # lossless
    else:
        assert np.abs(out.astype(int) - rgb).mean() < 6


def test_compressed_gray_and_16bit_png():
    g = np.arange(6 * 7, dtype=np.uint8).reshape(6, 7) * 5
    ok, buf = cv2.imencode(".png", g)
    np.testing.assert_array_equal(
        enc.decode_compressed("png", buf.tobytes()), np.repeat(g[..., None], 3, 2)
    )
    g16 = np.arange(6 * 7, dtype=np.uint16).reshape(6, 7) * 1500
    ok, buf = cv2.imencode(".png", g16)
    out = enc.decode_compressed("png", buf.tobytes())
    np.testing.assert_array_equal(out[..., 0], ((g16.astype(int) + 128) // 257).astype(np.uint8))
    rgba = np.dstack([g, g // 2, g // 3, np.full_like(g, 7)])
    ok, buf = cv2.imencode(".png", rgba)  # BGRA on disk
    np.testing.assert_array_equal(enc.decode_compressed("png", buf.tobytes()), rgba[..., 2::-1])


def _png_with_size(w, h):
    ok, buf = cv2.imencode(".png", np.zeros((2, 2), np.uint8))
    b = bytearray(buf.tobytes())
    b[16:24] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
    return bytes(b)


def _jpeg_with_size(w, h):
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))
    b = bytearray(buf.tobytes())
    i = b.index(b"\xff\xc0")
    b[i + 5 : i + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    return bytes(b)


@pytest.mark.parametrize(
    "fmt, data, fault",
    [
        ("jpeg", b"", "corrupt"),
        ("jpeg", b"garbage bytes that are no image", "corrupt"),
        ("png", b"\x89PNG\r\n\x1a\n" + b"\0" * 4, "corrupt"),
        ("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF", "corrupt"),
        ("png", _png_with_size(100000, 2), "size"),
        ("png", _png_with_size(16384, 16385), "size"),
        ("png", _png_with_size(0, 5), "size"),
        ("jpeg", _jpeg_with_size(65535, 65535), "size"),
        ("webp", b"RIFF....WEBP", "format"),
        ("bmp", b"BM", "format"),
        ("16UC1; compressedDepth png", b"\0" * 12, "format"),
        ("16UC1; compressedDepth", b"\0" * 12, "format"),
    ],
)
def test_compressed_errors(fmt, data, fault):
    with pytest.raises(ImageDecodeError) as ei:
        enc.decode_compressed(fmt, data)
    assert ei.value.fault == fault, str(ei.value)


def test_truncated_jpeg_is_decoded_or_rejected_cleanly():
    rng = np.random.default_rng(2)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = buf.tobytes()
    for cut in (3, 20, 200, len(data) // 2, len(data) - 2):
        try:
            out = enc.decode_compressed("jpeg", data[:cut])
        except ImageDecodeError as e:
            assert e.fault in ("corrupt", "size")
        else:
            assert out.shape == (64, 64, 3)


# -- encode_raw ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, dtype, shape",
    [
        ("mono8", np.uint8, (5, 7)),
        ("16UC1", np.uint16, (5, 7)),
        ("mono16", np.uint16, (5, 7)),
        ("32SC1", np.int32, (5, 7)),
        ("rgb8", np.uint8, (5, 7, 3)),
        ("bgr8", np.uint8, (5, 7, 3)),
        ("rgba8", np.uint8, (5, 7, 4)),
        ("bgra8", np.uint8, (5, 7, 4)),
    ],
)
def test_encode_raw_round_trip(encoding, dtype, shape):
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    for arr in (a, a[:, ::-1]):  # non-contiguous input is copied
        step, data = enc.encode_raw(arr, encoding)
        assert step == shape[1] * (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize
        back = np.frombuffer(bytes(data), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
        np.testing.assert_array_equal(back, arr)
        if encoding in CASES:  # readable by our own decoder and rosbags-image
            np.testing.assert_array_equal(
                enc.raw_to_array(encoding, shape[0], shape[1], step, False, data), arr
            )


@pytest.mark.parametrize(
    "arr, encoding",
    [
        (np.zeros((2, 2), np.uint16), "mono8"),
        (np.zeros((2, 2, 3), np.uint8), "mono8"),
        (np.zeros((2, 2), np.uint8), "rgb8"),
        (np.zeros((2, 2), np.int64), "32SC1"),
        (np.zeros((2, 2), ">u2"), "16UC1"),
        (np.zeros((2, 2), np.uint8), "yuyv"),
        ([[1]], "mono8"),
    ],
)
def test_encode_raw_errors(arr, encoding):
    with pytest.raises(ImageEncodeError):
        enc.encode_raw(arr, encoding)


@pytest.mark.parametrize("encoding", enc.RGB_CONVERSIONS)
def test_from_rgb_decodes_back(encoding):
    """from_rgb + encode_raw is what a camera of that encoding sends: our decoder returns the RGB
    (mono8: its OpenCV gray value on all three channels)."""
    rgb = np.random.default_rng(5).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    arr = enc.from_rgb(rgb, encoding)
    step, data = enc.encode_raw(arr, encoding)
    back = enc.decode_raw(encoding, 6, 8, step, False, bytes(data))
    want = rgb
    if encoding == "mono8":
        gray = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])
        assert np.abs(arr.astype(int) - gray).max() <= 1
        want = np.repeat(arr[..., None], 3, axis=2)
    np.testing.assert_array_equal(back, want)


@pytest.mark.parametrize(
    "rgb, encoding",
    [
        (np.zeros((2, 2, 3), np.uint8), "yuyv"),
        (np.zeros((2, 2), np.uint8), "rgb8"),
        ([[1]], "rgb8"),
    ],
)
def test_from_rgb_errors(rgb, encoding):
    with pytest.raises(ImageEncodeError):
        enc.from_rgb(rgb, encoding)


def test_identical_to_cv_bridge_where_importable():
    """cv_bridge is not on PyPI; on a ROS machine with it, both must agree exactly."""
    cv_bridge = pytest.importorskip("cv_bridge")
    from sensor_msgs.msg import Image

    bridge = cv_bridge.CvBridge()
    rng = np.random.default_rng(11)
    compared = 0
    for encoding in sorted(CASES):
        h, w = 6, 8
        arr = native(encoding, h, w, rng)
        data, step = pack(arr, 3, False)
        msg = Image(height=h, width=w, encoding=encoding, is_bigendian=False, step=step, data=data)
        try:
            ref = bridge.imgmsg_to_cv2(msg, "rgb8")
        except Exception:  # conversions cv_bridge itself does not offer (e.g. 16UC1 -> rgb8)
            continue
        np.testing.assert_array_equal(
            enc.decode_raw(encoding, h, w, step, False, data), ref, err_msg=encoding
        )
        compared += 1
    assert compared > 10
