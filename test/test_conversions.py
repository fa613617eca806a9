"""conversions.py with real rclpy messages (and rosbags message objects), no mocks.

Wire-level check: our output Images are serialised with rclpy and deserialised and decoded by
rosbags (an independent implementation), so field layout, step and byte order are verified.
The vision_msgs parts are skipped where vision_msgs is not importable.
"""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from rosbags.image import message_to_cvimage
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from panoptic_ros.core.encodings import ImageDecodeError, ImageEncodeError
from panoptic_ros.core.taxonomy import ClassInfo, Taxonomy
from panoptic_ros.core.types import UNLABELED, Instance, PanopticResult
from panoptic_ros.core.visualize import rgb_to_panoptic
from panoptic_ros.ros import conversions as conv

HAVE_VISION_MSGS = importlib.util.find_spec("vision_msgs") is not None
needs_vision_msgs = pytest.mark.skipif(
    not HAVE_VISION_MSGS, reason="vision_msgs not importable (scripts/setup builds it)"
)

TS = get_typestore(Stores.ROS2_KILTED)


def header(sec=12, nanosec=345, frame="camera_optical"):
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame)


def image_msg(arr: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h = arr.shape[0]
    rows = np.ascontiguousarray(arr).reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = np.hstack([rows, np.full((h, pad), 7, np.uint8)])
    m = Image()
    m.header = header()
    m.height, m.width = h, arr.shape[1]
    m.encoding = encoding
    m.is_bigendian = False
    m.step = data.shape[1]
    m.data = data.tobytes()
    return m


def to_rosbags(msg):
    """rclpy message -> CDR bytes -> rosbags message object (independent deserialiser)."""
    return TS.deserialize_cdr(
        serialize_message(msg), type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
    )


# -- input side -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, ch, dtype",
    [
        ("rgb8", 3, np.uint8),
        ("bgr8", 3, np.uint8),
        ("rgba8", 4, np.uint8),
        ("bgra8", 4, np.uint8),
        ("mono8", 1, np.uint8),
        ("mono16", 1, np.uint16),
        ("yuv422", 2, np.uint8),
        ("yuyv", 2, np.uint8),
        ("bayer_rggb8", 1, np.uint8),
        ("bayer_grbg16", 1, np.uint16),
    ],
)
@pytest.mark.parametrize("pad", [0, 5])
def test_image_msg_to_array_rclpy_and_rosbags(encoding, ch, dtype, pad):
    rng = np.random.default_rng(len(encoding) + pad)
    h, w = 7, 10
    shape = (h, w) if ch == 1 else (h, w, ch)
    arr = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)
    msg = image_msg(arr, encoding, pad)
    out = conv.image_msg_to_array(msg)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    rb = to_rosbags(msg)  # rosbags object of the same message, via the wire
    np.testing.assert_array_equal(conv.image_msg_to_array(rb), out)
    # rosbags-image as reference (it ignores step, so give it the compact message)
    ref = np.asarray(message_to_cvimage(to_rosbags(image_msg(arr, encoding, 0)), "rgb8"))
    tol = 1 if dtype == np.uint16 else 0
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= tol


def test_rgb8_from_rclpy_message_is_a_view():
    arr = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = image_msg(arr, "rgb8", 2)
    out = conv.image_msg_to_array(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, arr)


def test_compressed_rclpy_and_rosbags():
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), (3, 3), 0)
    for ext, fmt in ((".png", "png"), (".jpg", "rgb8; jpeg compressed bgr8")):
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
        msg = CompressedImage(header=header(), format=fmt, data=buf.tobytes())
        out = conv.image_msg_to_array(msg)
        rb = to_rosbags(msg)
        np.testing.assert_array_equal(conv.image_msg_to_array(rb), out)
        np.testing.assert_array_equal(out, np.asarray(message_to_cvimage(rb, "rgb8")))
        if ext == ".png":
            np.testing.assert_array_equal(out, rgb)


def test_bad_messages_raise_image_decode_error():
    m = image_msg(np.zeros((2, 2, 3), np.uint8), "rgb8")
    m.data = m.data[:-1]
    with pytest.raises(ImageDecodeError, match="truncated"):
        conv.image_msg_to_array(m)
    m = image_msg(np.zeros((2, 2, 3), np.uint8), "rgb8")
    m.encoding = "32FC1"
    with pytest.raises(ImageDecodeError, match="unknown"):
        conv.image_msg_to_array(m)
    with pytest.raises(ImageDecodeError, match="not a JPEG or PNG"):
        conv.image_msg_to_array(CompressedImage(format="jpeg", data=b"\x00\x01garbage"))
    with pytest.raises(ImageDecodeError, match="unsupported compressed"):
        conv.image_msg_to_array(
            CompressedImage(format="16UC1; compressedDepth png", data=b"\x00" * 20)
        )
    with pytest.raises(ImageDecodeError):
        conv.image_msg_to_array(Header())


# -- output side ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, dtype, ch",
    [
        ("mono8", np.uint8, 1),
        ("16UC1", np.uint16, 1),
        ("32SC1", np.int32, 1),
        ("rgb8", np.uint8, 3),
        ("bgr8", np.uint8, 3),
        ("mono16", np.uint16, 1),
    ],
)
def test_array_to_image_msg_wire_round_trip(encoding, dtype, ch):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    shape = (5, 9) if ch == 1 else (5, 9, 3)
    arr = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
    hdr = header()
    msg = conv.array_to_image_msg(arr, encoding, hdr)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (5, 9, encoding, False)
    assert msg.step == 9 * ch * np.dtype(dtype).itemsize
    rb = to_rosbags(msg)
    np.testing.assert_array_equal(
        np.asarray(message_to_cvimage(rb)), arr
    )  # rosbags-image native decode
    hdr.frame_id = "changed"
    hdr.stamp.sec = 99
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.sec == 12
    arr[...] = 0  # the message owns its bytes
    assert bytes(msg.data) == rb.data.tobytes()


def test_array_to_image_msg_rejects_wrong_dtype():
    with pytest.raises(ImageEncodeError):
        conv.array_to_image_msg(np.zeros((2, 2), np.int64), "32SC1", header())


def make_result(taxonomy: Taxonomy, h=60, w=80, semantic_dtype=np.uint8):
    """A hand-built frame: sky / road stuff, two adjacent cars, one person, an unlabeled strip."""
    unl = UNLABELED if semantic_dtype == np.uint8 else 65535
    sem = np.zeros((h, w), semantic_dtype)
    sem[: h // 3] = 4  # sky
    sem[:, :3] = unl
    inst = np.zeros((h, w), np.uint16)
    boxes = {
        1: (10, 30, 25, 50, 6),
        2: (25, 30, 40, 50, 6),
        3: (50, 20, 57, 55, 5),
    }  # adjacent cars
    instances = []
    for iid, (x0, y0, x1, y1, cls) in boxes.items():
        sem[y0:y1, x0:x1] = cls
        inst[y0:y1, x0:x1] = iid
        ys, xs = np.nonzero(inst == iid)
        instances.append(
            Instance(
                id=iid,
                class_id=cls,
                score=0.5 + iid / 10,
                bbox=(x0, y0, x1, y1),
                area=int(ys.size),
                centroid=(float(xs.mean()), float(ys.mean())),
            )
        )
    pan = taxonomy.encode_panoptic(sem, inst, unlabeled=unl)
    return PanopticResult(
        semantic=sem,
        instance=inst,
        panoptic=pan,
        instances=tuple(instances),
        timings={"infer": 1.0},
    )


def decode(msg: Image) -> np.ndarray:
    dt = {"mono8": np.uint8, "16UC1": np.uint16, "32SC1": np.int32, "rgb8": np.uint8}[msg.encoding]
    assert not msg.is_bigendian
    a = np.frombuffer(msg.data, dtype=np.dtype(dt).newbyteorder("<"))
    per_row = msg.step // np.dtype(dt).itemsize
    a = a.reshape(msg.height, per_row)
    return a.reshape(msg.height, msg.width, 3) if msg.encoding == "rgb8" else a


def _headers(msgs):
    out = [msgs.semantic.header, msgs.instance.header, msgs.panoptic.header]
    out += [m.header for m in (msgs.panoptic_rgb, msgs.overlay) if m is not None]
    if msgs.detections is not None:
        out.append(msgs.detections.header)
        out += [d.header for d in msgs.detections.detections]
    return out


@needs_vision_msgs
def test_result_to_messages_round_trip():
    tax = Taxonomy.default()
    res = make_result(tax)
    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    hdr = header()
    msgs = conv.result_to_messages(
        res, hdr, tax, image_rgb=img, want_overlay=True, want_panoptic_rgb=True
    )
    # images decode back to the maps, with the contract's encodings
    assert msgs.semantic.encoding == "mono8" and msgs.instance.encoding == "16UC1"
    assert msgs.panoptic.encoding == "32SC1" and msgs.panoptic_rgb.encoding == "rgb8"
    np.testing.assert_array_equal(decode(msgs.semantic), res.semantic)
    assert (decode(msgs.semantic)[:, :3] == 255).all()
    np.testing.assert_array_equal(decode(msgs.instance), res.instance)
    np.testing.assert_array_equal(decode(msgs.panoptic), res.panoptic)
    assert (decode(msgs.panoptic)[:, :3] == -1).all()
    np.testing.assert_array_equal(rgb_to_panoptic(decode(msgs.panoptic_rgb)), res.panoptic)
    ov = decode(msgs.overlay)
    assert ov.shape == img.shape
    np.testing.assert_array_equal(ov[:, :3], img[:, :3])  # unlabeled: the camera image
    assert (ov[35:45, 12:22] != img[35:45, 12:22]).any()
    # independent decoder agrees on the wire
    np.testing.assert_array_equal(
        np.asarray(message_to_cvimage(to_rosbags(msgs.panoptic))), res.panoptic
    )
    # detections: ids equal the instance image's ids; class, score, bbox
    dets = msgs.detections.detections
    assert sorted(int(d.id) for d in dets) == sorted(set(np.unique(decode(msgs.instance))) - {0})
    by_id = {int(d.id): d for d in dets}
    for inst in res.instances:
        d = by_id[inst.id]
        assert d.results[0].hypothesis.class_id == str(inst.class_id)
        assert d.results[0].hypothesis.score == pytest.approx(inst.score)
        x0, y0, x1, y1 = inst.bbox
        assert (d.bbox.size_x, d.bbox.size_y) == (x1 - x0, y1 - y0)
        assert d.bbox.center.position.x - d.bbox.size_x / 2 == x0
        assert d.bbox.center.position.y + d.bbox.size_y / 2 == y1
        ys, xs = np.nonzero(decode(msgs.instance) == int(d.id))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == inst.bbox
    # headers: equal to the input, independent of it and of each other
    hs = _headers(msgs)
    assert len(hs) == 6 + 3
    for h in hs:
        assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (12, 345, "camera_optical")
    hdr.stamp.sec = 1
    hdr.frame_id = "x"
    msgs.semantic.header.frame_id = "y"
    assert all(h.frame_id == "camera_optical" for h in _headers(msgs)[1:])
    assert msgs.instance.header.stamp.sec == 12


@needs_vision_msgs
def test_result_to_messages_optional_outputs_and_errors():
    tax = Taxonomy.default()
    res = make_result(tax)
    msgs = conv.result_to_messages(res, header(), tax)
    assert msgs.overlay is None and msgs.panoptic_rgb is None
    with pytest.raises(ValueError, match="image_rgb"):
        conv.result_to_messages(res, header(), tax, want_overlay=True)
    empty = PanopticResult(res.semantic, res.instance, res.panoptic, instances=())
    assert conv.result_to_messages(empty, header(), tax).detections.detections == []


@needs_vision_msgs
def test_result_to_messages_builds_only_requested_outputs():
    """The node asks only for outputs with subscribers; what it gets equals the full build."""
    tax = Taxonomy.default()
    res = make_result(tax)
    full = conv.result_to_messages(res, header(), tax)
    for outputs in [
        (),
        ("semantic",),
        ("instance", "detections"),
        ("panoptic",),
        conv.LABEL_OUTPUTS,
    ]:
        msgs = conv.result_to_messages(res, header(), tax, outputs=outputs)
        for name in conv.LABEL_OUTPUTS:
            if name in outputs:
                assert getattr(msgs, name) == getattr(full, name), name
            else:
                assert getattr(msgs, name) is None, name
    rgb_only = conv.result_to_messages(res, header(), tax, outputs=(), want_panoptic_rgb=True)
    assert rgb_only.panoptic is None and rgb_only.panoptic_rgb is not None
    with pytest.raises(ValueError, match="unknown output"):
        conv.result_to_messages(res, header(), tax, outputs=("overlay",))


@needs_vision_msgs
def test_semantic_16bit_for_large_taxonomy():
    big = Taxonomy(tuple(ClassInfo(i, f"c{i}", i >= 290, (i % 256, 0, 0)) for i in range(300)))
    res = make_result(big)  # uint8 semantic with 255 unlabeled -> 16UC1 with 65535
    msgs = conv.result_to_messages(res, header(), big)
    assert msgs.semantic.encoding == "16UC1"
    sem = decode(msgs.semantic)
    assert (sem[:, :3] == 65535).all()
    np.testing.assert_array_equal(sem[:, 3:], res.semantic[:, 3:])
    res16 = make_result(big, semantic_dtype=np.uint16)
    np.testing.assert_array_equal(
        decode(conv.result_to_messages(res16, header(), big).semantic), res16.semantic
    )
    # a uint16 semantic with a small taxonomy goes out as mono8
    tax = Taxonomy.default()
    res16 = make_result(tax, semantic_dtype=np.uint16)
    m = conv.result_to_messages(res16, header(), tax).semantic
    assert m.encoding == "mono8"
    np.testing.assert_array_equal(decode(m), make_result(tax).semantic)


@needs_vision_msgs
def test_label_info_msg():
    tax = Taxonomy.default()
    msg = conv.label_info_msg(tax, header(), threshold=0.3)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [
        (c.id, c.name) for c in tax.classes
    ]
    assert msg.threshold == pytest.approx(0.3)
    assert msg.header.frame_id == "camera_optical"
    serialize_message(msg)  # a well-formed message


@needs_vision_msgs
def test_overlay_from_a_padded_rgb8_view():
    """The node passes the decoded frame (a read-only row-strided view) straight to result_to_messages."""
    tax = Taxonomy.default()
    res = make_result(tax)
    arr = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    frame = conv.image_msg_to_array(image_msg(arr, "rgb8", pad=9))
    assert not frame.flags.c_contiguous and not frame.flags.writeable
    msgs = conv.result_to_messages(res, header(), tax, image_rgb=frame, want_overlay=True)
    ref = conv.result_to_messages(res, header(), tax, image_rgb=arr.copy(), want_overlay=True)
    assert bytes(msgs.overlay.data) == bytes(ref.overlay.data)


def test_max_pixels_passthrough():
    msg = image_msg(np.zeros((10, 10), np.uint8), "mono8")
    with pytest.raises(ImageDecodeError, match="limit of 50"):
        conv.image_msg_to_array(msg, max_pixels=50)
