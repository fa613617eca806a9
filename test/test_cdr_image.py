"""ros/cdr_image.py: the serialized Image the node publishes is byte-identical to what rclpy makes
of today's message (``serialize_message(array_to_image_msg(...))``), for every output encoding,
odd widths, frame_ids of every length mod 4 and non-ASCII ones, and real stamps.

Byte-identical means every byte except CDR's alignment padding, which Fast CDR leaves
uninitialised (its value differs between processes; ours are zeros): ``padding_offsets`` names
those bytes (at most 3 + 3), the test checks ours are zero and compares all the others. A DDS test
(real rclpy publisher and subscription) shows the bytes arrive as the message, and one with the
real node (fake model only) that its semantic / instance / panoptic outputs decode to the result.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from test_conversions import make_result

from panoptic_ros.core.encodings import ImageEncodeError
from panoptic_ros.core.taxonomy import ClassInfo, Taxonomy
from panoptic_ros.ros import conversions as conv
from panoptic_ros.ros.cdr_image import image_cdr, padding_offsets

ENCODINGS = {
    "mono8": (np.uint8, 1),
    "16UC1": (np.uint16, 1),
    "32SC1": (np.int32, 1),
    "rgb8": (np.uint8, 3),
}
# "ab\0cd": rclpy passes frame_id to C as a NUL-terminated string, so it serializes "ab"
FRAME_IDS = ["", "a", "ab", "abc", "abcd", "camera_optical", "x" * 33, "kamera_ü_北", "ab\0cd"]


def header(frame_id="camera", sec=1_700_000_123, nanosec=999_999_999):
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def array(encoding: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    dtype, ch = ENCODINGS[encoding]
    info = np.iinfo(dtype)
    shape = (h, w) if ch == 1 else (h, w, ch)
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def assert_same_bytes(ours: bytes, msg: Image) -> None:
    """``ours`` equals rclpy's serialization of ``msg`` at every byte that is not padding."""
    ref = bytearray(serialize_message(msg))
    assert len(ours) == len(ref)
    pads = padding_offsets(msg.header.frame_id, msg.encoding)
    assert len(pads) <= 6
    mine = bytearray(ours)
    for o in pads:
        assert mine[o] == 0, f"padding byte {o} is {mine[o]}"
        ref[o] = 0
    first = next((i for i, (a, b) in enumerate(zip(mine, ref)) if a != b), None)
    assert first is None, f"first difference at byte {first} of {len(ref)}"


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("frame_id", FRAME_IDS)
def test_bytes_equal_rclpy_serialization(encoding, frame_id):
    for h, w in ((1, 1), (3, 5), (7, 13), (2, 640)):
        a = array(encoding, h, w, seed=h * w)
        hd = header(frame_id)
        assert_same_bytes(image_cdr(a, encoding, hd), conv.array_to_image_msg(a, encoding, hd))


@pytest.mark.parametrize("sec, nanosec", [(0, 0), (-5, 7), (2**31 - 1, 2**32 - 1)])
def test_stamps(sec, nanosec):
    a, hd = array("16UC1", 3, 3), header("f", sec, nanosec)
    ours = image_cdr(a, "16UC1", hd)
    assert_same_bytes(ours, conv.array_to_image_msg(a, "16UC1", hd))
    back = deserialize_message(ours, Image)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (sec, nanosec)


def test_non_contiguous_array_and_vga():
    a = array("32SC1", 480, 641)[:, 1:]  # a view with a row stride: copied as rows of 640
    hd = header()
    ours = image_cdr(a, "32SC1", hd)
    assert_same_bytes(ours, conv.array_to_image_msg(a, "32SC1", hd))
    back = deserialize_message(ours, Image)
    got = np.frombuffer(bytes(back.data), np.int32).reshape(480, 640)
    assert np.array_equal(got, a)


def test_bytes_do_not_alias_the_array():
    a = array("mono8", 4, 4)
    before = image_cdr(a, "mono8", header())
    a[:] = 0  # the caller may reuse its array at once
    assert image_cdr(array("mono8", 4, 4), "mono8", header()) == before


def test_bad_input_raises_like_the_message_path():
    for bad, enc in (
        (np.zeros((2, 2), np.int64), "32SC1"),
        (np.zeros((2, 2, 3), np.uint8), "mono8"),
    ):
        with pytest.raises(ImageEncodeError):
            conv.array_to_image_msg(bad, enc, header())
        with pytest.raises(ImageEncodeError):
            image_cdr(bad, enc, header())
    with pytest.raises(ImageEncodeError):
        image_cdr(np.zeros((2, 2), np.uint8), "bgr16", header())


def test_too_big_and_unencodable_inputs_are_named():
    """Over 4 GiB of pixels cannot be a sensor_msgs/Image (uint32 length): said as such (it once
    read "header stamp does not fit"); a frame_id that is not UTF-8-encodable fails as rclpy
    does; big-endian arrays are refused as the message path refuses them."""
    huge = np.broadcast_to(np.zeros(1, np.uint16), (1, 2**31))  # 4 GiB, never allocated
    with pytest.raises(ValueError, match="at most 4294967295"):
        image_cdr(huge, "16UC1", header())
    with pytest.raises(UnicodeEncodeError):
        image_cdr(array("mono8", 2, 2), "mono8", header("x\udc80"))
    with pytest.raises(ImageEncodeError, match="native byte order"):
        image_cdr(array("16UC1", 2, 2).astype(">u2"), "16UC1", header())


@pytest.mark.parametrize("big", [False, True])
def test_result_to_messages_serialized_matches_messages(big):
    """Every image output, both semantic encodings (mono8; 16UC1 for > 254 classes)."""
    tax = (
        Taxonomy(tuple(ClassInfo(i, f"c{i}", i >= 290, (i % 256, 0, 0)) for i in range(300)))
        if big
        else Taxonomy.default()
    )
    res = make_result(tax, h=61, w=83)
    rgb = np.random.default_rng(1).integers(0, 255, (61, 83, 3), dtype=np.uint8)
    kw = dict(
        image_rgb=rgb,
        want_overlay=True,
        want_panoptic_rgb=True,
        outputs=("semantic", "instance", "panoptic"),
    )
    hd = header("cam_7")
    msgs = conv.result_to_messages(res, hd, tax, **kw)
    ser = conv.result_to_messages(res, hd, tax, serialized=True, **kw)
    assert msgs.semantic.encoding == ("16UC1" if big else "mono8")
    for name in ("semantic", "instance", "panoptic", "panoptic_rgb", "overlay"):
        assert isinstance(getattr(ser, name), bytes), name
        assert_same_bytes(getattr(ser, name), getattr(msgs, name))
    assert ser.detections is None


@pytest.mark.ros
def test_published_bytes_arrive_as_the_message():
    """Real rclpy publisher (bytes) -> DDS -> a typed subscription in the same context."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node(f"cdr_image_test_{time.time_ns()}", context=ctx)
        got: list[Image] = []
        topic = f"/cdr_image_test_{time.time_ns()}"
        node.create_subscription(Image, topic, got.append, 10)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        pub = node.create_publisher(Image, topic, 10)
        a, hd = array("16UC1", 37, 53), header("cam_ü")
        deadline = time.monotonic() + 20
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        pub.publish(image_cdr(a, "16UC1", hd))
        while not got and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        assert got, "no message arrived"
        m = got[0]
        assert (m.header.frame_id, m.header.stamp.sec, m.encoding, m.step) == (
            "cam_ü",
            hd.stamp.sec,
            "16UC1",
            53 * 2,
        )
        assert np.array_equal(np.frombuffer(bytes(m.data), np.uint16).reshape(37, 53), a)
        ex.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
