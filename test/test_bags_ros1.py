"""ROS 1 bags: real ``.bag`` files written by rosbags.rosbag1, read as ROS 2 messages, processed
into rosbag2 and replayed over real DDS."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli, summary

pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built")

from panoptic_ros.bags.messages import (  # noqa: E402
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagMessageError,
    cdr_header_stamp,
    deserialize,
    typestore,
)
from panoptic_ros.bags.reader import BagReader  # noqa: E402
from panoptic_ros.cli import process_bag as pb  # noqa: E402
from panoptic_ros.ros.conversions import stamp_to_ns  # noqa: E402

H, W = 60, 80
T0 = 1_600_000_000_000_000_000


def _ros1_store():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    extra = get_types_from_msg("geometry_msgs/TransformStamped[] transforms\n", "tf/msg/tfMessage")
    extra.update(get_types_from_msg("uint8[] blob\nstring note\n", "acme_msgs/msg/Blob"))
    ts.register(extra)
    return ts


def write_ros1_bag(path: Path, *, frames: int = 3, corrupt: bool = False) -> dict:
    """A ROS 1 camera recording: rgb8 Image, jpeg CompressedImage, CameraInfo, a 16UC1 depth
    image, tf (ROS 1 ``tf/tfMessage``), a latched custom type. Returns what was written."""
    import cv2
    from rosbags.rosbag1 import Writer

    from panoptic_ros.core.synthetic import generate_scene

    ts = _ros1_store()
    T = ts.types
    truth: dict = {"stamps": [], "images": [], "seq": []}

    def header(i: int, t: int):
        return T["std_msgs/msg/Header"](
            seq=100 + i,
            stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
            frame_id="cam",
        )

    with Writer(path) as w:
        c_img = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        c_jpg = w.add_connection(
            "/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts
        )
        c_info = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_depth = w.add_connection("/cam/depth/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        c_tf = w.add_connection("/tf", "tf/msg/tfMessage", typestore=ts)
        c_blob = w.add_connection("/acme/blob", "acme_msgs/msg/Blob", typestore=ts, latching=1)
        w.write(
            c_blob,
            T0,
            ts.serialize_ros1(
                T["acme_msgs/msg/Blob"](blob=np.arange(4, dtype=np.uint8), note="hello"),
                "acme_msgs/msg/Blob",
            ),
        )
        for i in range(frames):
            t = T0 + i * 100_000_000
            rgb = generate_scene(20_000_000 + i, H, W).image
            truth["stamps"].append(t)
            truth["images"].append(rgb)
            img = T["sensor_msgs/msg/Image"](
                header=header(i, t),
                height=H,
                width=W,
                encoding="rgb8",
                is_bigendian=0,
                step=W * 3,
                data=rgb.reshape(-1).copy(),
            )
            raw = ts.serialize_ros1(img, "sensor_msgs/msg/Image")
            w.write(c_img, t + 1_000_000, raw[:40] if corrupt and i == 1 else raw)
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            cimg = T["sensor_msgs/msg/CompressedImage"](
                header=header(i, t), format="jpeg", data=jpg.reshape(-1)
            )
            w.write(
                c_jpg, t + 2_000_000, ts.serialize_ros1(cimg, "sensor_msgs/msg/CompressedImage")
            )
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(i, t),
                height=H,
                width=W,
                distortion_model="plumb_bob",
                D=np.array([0.1, 0.2, 0.0, 0.0, 0.0]),
                K=np.arange(9, dtype=np.float64),
                R=np.eye(3).reshape(-1),
                P=np.arange(12, dtype=np.float64),
                binning_x=0,
                binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
                ),
            )
            w.write(c_info, t + 3_000_000, ts.serialize_ros1(info, "sensor_msgs/msg/CameraInfo"))
            depth = T["sensor_msgs/msg/Image"](
                header=header(i, t),
                height=H,
                width=W,
                encoding="16UC1",
                is_bigendian=0,
                step=W * 2,
                data=np.full(H * W * 2, 7, np.uint8),
            )
            w.write(c_depth, t + 4_000_000, ts.serialize_ros1(depth, "sensor_msgs/msg/Image"))
            tr = T["geometry_msgs/msg/TransformStamped"](
                header=header(i, t),
                child_frame_id="cam",
                transform=T["geometry_msgs/msg/Transform"](
                    translation=T["geometry_msgs/msg/Vector3"](x=1.0, y=2.0, z=3.0 + i),
                    rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                ),
            )
            w.write(
                c_tf,
                t + 5_000_000,
                ts.serialize_ros1(T["tf/msg/tfMessage"](transforms=[tr]), "tf/msg/tfMessage"),
            )
    return truth


def test_ros1_bag_reads_as_ros2_messages(tmp_path):
    from rosbags.interfaces import QosDurability

    bag = tmp_path / "rec.bag"
    truth = write_ros1_bag(bag)
    with BagReader(bag) as r:
        assert r.is_ros1 and r.problems == []
        topics = r.topics
        assert {t: i.msgtype for t, i in topics.items()} == {
            "/cam/image_raw": IMAGE_TYPE,
            "/cam/image_raw/compressed": COMPRESSED_TYPE,
            "/cam/camera_info": "sensor_msgs/msg/CameraInfo",
            "/cam/depth/image_raw": IMAGE_TYPE,
            "/tf": "tf2_msgs/msg/TFMessage",  # ROS 1 tf/tfMessage
            "/acme/blob": "acme_msgs/msg/Blob",
        }
        store = typestore()
        for t in ("/cam/image_raw", "/cam/camera_info", "/tf"):  # the ROS 2 definitions and hashes
            assert topics[t].digest == store.hash_rihs01(topics[t].msgtype), t
        assert topics["/acme/blob"].digest.startswith("RIHS01_")
        assert topics["/acme/blob"].qos[0].durability == QosDurability.TRANSIENT_LOCAL
        assert r.camera_topics() == (
            ["/cam/image_raw"],
            {
                "/cam/depth/image_raw": "not a camera image (encoding 16UC1)",
                "/cam/image_raw/compressed": "compressed copy of /cam/image_raw",
            },
        )
        assert r.camera_topics(["/cam/image_raw/compressed"])[0] == ["/cam/image_raw/compressed"]
        recs = list(r.messages())
    assert [x.log_time for x in recs] == sorted(x.log_time for x in recs)
    images = [deserialize(x) for x in recs if x.topic == "/cam/image_raw"]
    assert [stamp_to_ns(m.header.stamp) for m in images] == truth["stamps"]
    for m, rgb in zip(images, truth["images"]):
        assert (m.header.frame_id, m.encoding, m.step) == ("cam", "rgb8", W * 3)
        np.testing.assert_array_equal(np.asarray(m.data, np.uint8).reshape(H, W, 3), rgb)
    info = deserialize(next(x for x in recs if x.topic == "/cam/camera_info"))
    assert (info.distortion_model, list(info.d), list(info.k)) == (
        "plumb_bob",
        [0.1, 0.2, 0.0, 0.0, 0.0],
        [float(v) for v in range(9)],
    )
    tf = store.deserialize_cdr(
        next(x for x in recs if x.topic == "/tf").data, "tf2_msgs/msg/TFMessage"
    )
    assert tf.transforms[0].transform.translation.z == 3.0
    last_image = [x for x in recs if x.topic == "/cam/image_raw"][-1]
    assert cdr_header_stamp(last_image.data) == truth["stamps"][-1]


def test_ros1_message_that_does_not_convert_is_named(tmp_path):
    bag = tmp_path / "bad.bag"
    write_ros1_bag(bag, corrupt=True)
    with BagReader(bag) as r:
        bad = [x for x in r.messages(["/cam/image_raw"]) if x.error]
    assert len(bad) == 1 and bad[0].index == 1
    with pytest.raises(
        BagMessageError, match=r"/cam/image_raw message #1 .*ROS 1 sensor_msgs/msg/Image"
    ):
        deserialize(bad[0], bag)


@pytest.fixture(scope="module")
def segmenter():
    seg = pb.make_segmenter(pb.load_settings(None, "default", "onnxruntime"))
    yield seg
    seg.close()


def test_process_ros1_bag_into_rosbag2(tmp_path, segmenter):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "rec.bag"
    truth = write_ros1_bag(bag, corrupt=True)
    stats = pb.process_bag(bag, tmp_path / "out", segmenter=segmenter, log=lambda s: None)
    assert stats.frames == 2 and stats.skipped == 1  # one of 3 does not convert
    assert set(stats.skipped_topics) == {"/cam/depth/image_raw", "/cam/image_raw/compressed"}
    assert "ROS 1 sensor_msgs/msg/Image message does not convert" in "\n".join(stats.problems)
    store = typestore()
    with Reader(tmp_path / "out") as r:
        conns = {c.topic: c for c in r.connections}
        assert conns["/cam/camera_info"].msgtype == "sensor_msgs/msg/CameraInfo"
        assert conns["/tf"].digest == store.hash_rihs01("tf2_msgs/msg/TFMessage")
        got: dict[str, list] = {}
        for c, t, d in r.messages():
            got.setdefault(c.topic, []).append((t, d))
    assert [t for t, _ in got["/cam/camera_info"]] == [s + 3_000_000 for s in truth["stamps"]]
    info = store.deserialize_cdr(got["/cam/camera_info"][0][1], "sensor_msgs/msg/CameraInfo")
    assert list(info.p) == [float(v) for v in range(12)]
    assert len(got["/cam/depth/image_raw"]) == 3 and len(got["/acme/blob"]) == 1
    sem = [store.deserialize_cdr(d, IMAGE_TYPE) for _, d in got["/cam/semantic"]]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in sem] == [
        truth["stamps"][0],
        truth["stamps"][2],
    ]
    assert len(got["/cam/image_raw/compressed"]) == 3  # not segmented, copied
    # both asked for: each gets its own namespace
    stats = pb.process_bag(
        bag,
        tmp_path / "both",
        segmenter=segmenter,
        topics=["/cam/image_raw", "/cam/image_raw/compressed"],
        log=lambda s: None,
    )
    assert stats.namespaces == {
        "/cam/image_raw": "/cam/image_raw",
        "/cam/image_raw/compressed": "/cam/image_raw/compressed",
    }
    assert stats.frames == 5 and stats.counts["/cam/image_raw/compressed/semantic"] == 3


def test_ros1_bag_through_the_cli(tmp_path):
    bag = tmp_path / "rec.bag"
    write_ros1_bag(bag)
    proc = run_cli("process-bag", str(bag), str(tmp_path / "out"), "--backend", "onnxruntime")
    assert proc.returncode == 0, proc.stderr
    kv = summary(proc.stdout)
    assert (kv["frames"], kv["skipped_topics"], kv["copied"]) == (
        "3",
        "/cam/depth/image_raw,/cam/image_raw/compressed",
        "16",
    )
    assert (tmp_path / "out" / "metadata.yaml").is_file()


def test_replay_ros1_bag(tmp_path, rclpy_global):
    """replay publishes a ROS 1 bag's camera images as ROS 2 messages with their stamps."""
    from panoptic_ros.bags.recorder import TopicRecorder
    from panoptic_ros.bags.writer import BagWriter

    bag = tmp_path / "rec.bag"
    truth = write_ros1_bag(bag)
    topic = f"/t_replay_ros1_{os.getpid()}/image_raw"
    writer = BagWriter(tmp_path / "rec").open()
    rec = TopicRecorder(writer, {topic: IMAGE_TYPE}, node_name="t_replay_ros1_rec").start()
    try:
        proc = run_cli(
            "replay",
            str(bag),
            "--topics",
            "/cam/image_raw",
            "--remap",
            f"/cam/image_raw:={topic}",
            "--rate",
            "0",
            "--wait-for-subscribers",
            "20",
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 10
        while len(rec.stamps[topic]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rec.stop()
        writer.close()
    assert rec.stamps[topic] == truth["stamps"]
    with BagReader(tmp_path / "rec") as r:
        first = deserialize(next(r.messages([topic])))
    np.testing.assert_array_equal(
        np.asarray(first.data, np.uint8).reshape(H, W, 3), truth["images"][0]
    )


def test_ros1_topic_that_does_not_convert_is_named(tmp_path):
    """A ROS 1 type whose definition names a type the bag does not define: the topic is left
    out with a problem naming topic and type; process-bag says what is missing."""
    from rosbags.rosbag1 import Writer

    from panoptic_ros.bags.messages import BagError

    bag = tmp_path / "weird.bag"
    with Writer(bag) as w:
        c = w.add_connection(
            "/weird",
            "acme_msgs/msg/Weird",
            msgdef="int32 x\nacme_msgs/Missing y\n",
            md5sum="0" * 32,
        )
        w.write(c, 5, b"\x01\x00\x00\x00")
    with BagReader(bag) as r:
        assert r.topics == {}
        assert (
            "topic /weird: ROS 1 type acme_msgs/msg/Weird cannot be converted to ROS 2"
            in (r.problems[0])
        )
        with pytest.raises(BagError, match="no sensor_msgs/Image or CompressedImage topic"):
            r.camera_topics()
