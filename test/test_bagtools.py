"""bagtools: real rosbag2 bags (MCAP and sqlite3) written and read with rosbags; no model, no DDS."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.bags.messages import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    BagError,
    BagMessageError,
    cdr_header_stamp,
    deserialize,
    serialize,
    typestore,
)
from panoptic_ros.bags.reader import BagReader
from panoptic_ros.bags.synthetic import image_message, write_synthetic_bag
from panoptic_ros.bags.topics import output_namespace
from panoptic_ros.bags.writer import STORAGES, BagWriter
from panoptic_ros.ros.conversions import image_msg_to_array, stamp_to_ns

ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "jpeg", "png")


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_synthetic_roundtrip(tmp_path, storage, encoding):
    topic = "/cam/image_raw" + ("/compressed" if encoding in ("jpeg", "png") else "")
    bag = write_synthetic_bag(
        tmp_path / "bag",
        frames=3,
        height=48,
        width=64,
        topic=topic,
        encoding=encoding,
        storage=storage,
        keep_images=True,
        step_padding=8 if encoding == "bgr8" else 0,
    )
    assert [f.panoptic.shape for f in bag.frames] == [(48, 64)] * 3
    with BagReader(bag.path) as r:
        assert r.problems == []
        info = r.topics[topic]
        want_type = COMPRESSED_TYPE if encoding in ("jpeg", "png") else IMAGE_TYPE
        assert (info.msgtype, info.count) == (want_type, 3)
        assert info.digest.startswith("RIHS01_")
        assert r.image_topics() == [topic]
        recs = list(r.messages())
    assert [x.index for x in recs] == [0, 1, 2]
    for rec, gt in zip(recs, bag.frames):
        msg = deserialize(rec, bag.path)
        assert stamp_to_ns(msg.header.stamp) == gt.stamp
        assert rec.log_time == gt.stamp + 2_000_000  # receive time trails the stamp
        assert cdr_header_stamp(rec.data) == gt.stamp
        rgb = image_msg_to_array(msg)
        assert rgb.shape == (48, 64, 3)
        if encoding in ("rgb8", "bgr8", "rgba8", "png"):
            np.testing.assert_array_equal(rgb, gt.image)
        elif encoding == "mono8":
            assert np.all(rgb[..., 0] == rgb[..., 1])
        else:  # jpeg: lossy
            assert np.abs(rgb.astype(int) - gt.image).mean() < 12


def test_typestore_has_vision_msgs_with_rosidl_hashes():
    store = typestore()
    for name in ("Detection2DArray", "Detection2D", "LabelInfo", "VisionClass", "BoundingBox2D"):
        assert f"vision_msgs/msg/{name}" in store.fielddefs
    # rosidl writes the hashes next to the built interface; they must equal rosbags' (same wire type)
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("vision_msgs"))
    except Exception:
        pytest.skip("vision_msgs is not installed in an ament index")
    for name in ("Detection2DArray", "LabelInfo"):
        f = share / "msg" / f"{name}.json"
        if not f.is_file():
            pytest.skip(f"{f} not installed")
        hashes = {
            h["type_name"]: h["hash_string"] for h in json.loads(f.read_text())["type_hashes"]
        }
        assert store.hash_rihs01(f"vision_msgs/msg/{name}") == hashes[f"vision_msgs/msg/{name}"]


def test_output_namespace():
    assert output_namespace("/cam/image_raw") == "/cam"
    assert output_namespace("/cam/image_raw/compressed") == "/cam"
    assert output_namespace("/a/b/image") == "/a/b"
    assert output_namespace("/image") == ""


def test_truncated_mcap_keeps_complete_messages(tmp_path):
    bag = write_synthetic_bag(tmp_path / "bag", frames=6, height=480, width=640)  # ~1 MiB chunks
    f = _storage_file(bag.path)
    os.truncate(f, int(f.stat().st_size * 0.6))
    with BagReader(bag.path) as r:
        assert r.recovered
        recs = list(r.messages())
        problems = "\n".join(r.problems)
    assert 1 <= len(recs) < 6
    assert [cdr_header_stamp(x.data) for x in recs] == [fr.stamp for fr in bag.frames[: len(recs)]]
    assert (
        str(f) in problems
        and "byte offset" in problems
        and "/camera/image_raw message #" in problems
    )


def test_mcap_without_metadata_yaml(tmp_path):
    bag = write_synthetic_bag(tmp_path / "bag", frames=2, height=32, width=32)
    (bag.path / "metadata.yaml").unlink()
    with BagReader(bag.path) as r:
        assert len(list(r.messages())) == 2
        assert "no metadata.yaml" in r.problems[0]
    with BagReader(_storage_file(bag.path)) as r:  # a bare .mcap file
        assert r.topics["/camera/image_raw"].count == 2


def test_truncated_sqlite_is_a_clear_error(tmp_path):
    bag = write_synthetic_bag(tmp_path / "bag", frames=4, height=240, width=320, storage="sqlite3")
    f = _storage_file(bag.path)
    os.truncate(f, f.stat().st_size // 2)
    with pytest.raises(BagError, match=str(f.parent)):
        BagReader(bag.path).open()


def test_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        BagReader(tmp_path / "missing").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a bag"):
        BagReader(tmp_path / "empty").open()
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="junk.mcap"):
        BagReader(junk).open()


def test_unknown_message_type_and_corrupt_payload(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg

    store = typestore()
    custom = get_types_from_msg("uint8[] blob\n", "acme_msgs/msg/Blob")
    good = serialize(image_message(np.zeros((4, 4, 3), np.uint8), 5, encoding="rgb8"))
    path = tmp_path / "bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        from rosbags.typesys import Stores, get_typestore

        ts = get_typestore(Stores.EMPTY)
        ts.register(custom)
        c1 = w.add_connection("/acme/blob", "acme_msgs/msg/Blob", typestore=ts)
        c2 = w.add_connection("/cam/image", IMAGE_TYPE, typestore=store)
        w.write(
            c1,
            1,
            ts.serialize_cdr(
                ts.types["acme_msgs/msg/Blob"](blob=np.zeros(3, np.uint8)), "acme_msgs/msg/Blob"
            ),
        )
        w.write(c2, 2, good)
        w.write(c2, 3, good[:20])  # truncated CDR
    with BagReader(path) as r:
        assert r.image_topics() == ["/cam/image"]
        with pytest.raises(BagError, match="acme_msgs/msg/Blob, not an Image"):
            r.image_topics(["/acme/blob"])
        with pytest.raises(BagError, match="no topic '/nope'"):
            r.image_topics(["/nope"])
        recs = list(r.messages())
    blob, ok, bad = recs
    with pytest.raises(BagMessageError, match="acme_msgs/msg/Blob is not available"):
        deserialize(blob, path)
    assert deserialize(ok, path).width == 4
    with pytest.raises(BagMessageError) as err:
        deserialize(bad, path)
    assert "/cam/image message #1" in str(
        err.value
    ) and "corrupt sensor_msgs/msg/Image payload" in str(err.value)
    assert (err.value.topic, err.value.index, err.value.log_time) == ("/cam/image", 1, 3)


@pytest.mark.parametrize("storage", STORAGES)
def test_writer_finalises_on_exception(tmp_path, storage):
    msg = image_message(np.zeros((8, 8, 3), np.uint8), 10)
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path / "bag", storage) as w:
            for i in range(3):
                w.write_msg("/cam/image", msg, 100 + i)
            raise RuntimeError("boom")
    with BagReader(tmp_path / "bag") as r:
        assert r.problems == []
        assert r.topics["/cam/image"].count == 3


def test_writer_refuses_to_clobber(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "precious")
    with pytest.raises(BagError, match="does not look like a rosbag2"):
        BagWriter(tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    write_synthetic_bag(tmp_path / "old", frames=1, height=16, width=16)
    write_synthetic_bag(tmp_path / "old", frames=2, height=16, width=16, overwrite=True)
    with BagReader(tmp_path / "old") as r:
        assert r.topics["/camera/image_raw"].count == 2
    shutil.rmtree(tmp_path / "old")


@pytest.mark.parametrize("storage", STORAGES)
def test_ros_distro_is_the_running_one(tmp_path, storage):
    """metadata.yaml and the copy inside the storage name the running distro, not 'rosbags'."""
    import sqlite3

    from panoptic_ros.bags.writer import ros_distro

    distro = ros_distro()
    assert distro and distro != "rosbags"
    record = Path(sys.prefix) / ".panoptic-ros-distro"  # what scripts/setup installed
    if not os.environ.get("ROS_DISTRO") and record.is_file():
        assert (
            distro == record.read_text().strip()
        )  # the venv's ROS wheels (jazzy: rclpy 7.x, kilted: 9.x)
    bag = write_synthetic_bag(tmp_path / "bag", frames=1, height=16, width=16, storage=storage)
    assert f"ros_distro: {distro}\n" in (bag.path / "metadata.yaml").read_text()
    with BagReader(bag.path) as r:
        assert r.topics["/camera/image_raw"].count == 1
    if storage == "sqlite3":
        db = sqlite3.connect(_storage_file(bag.path))
        try:
            assert db.execute("SELECT ros_distro FROM schema").fetchall() == [(distro,)]
            (meta,) = db.execute("SELECT metadata FROM metadata").fetchone()
            assert f"ros_distro: {distro}" in meta
        finally:
            db.close()


def test_camera_encoding():
    from panoptic_ros.bags.topics import camera_encoding

    for enc in (
        "rgb8",
        "bgr8",
        "rgba8",
        "bgra16",
        "mono8",
        "mono16",
        "bayer_rggb8",
        "yuv422",
        "8UC3",
    ):
        assert camera_encoding(enc), enc
    for enc in ("16UC1", "32FC1", "8UC1", "16SC1", "64FC1", "32SC1"):
        assert not camera_encoding(enc), enc
    for fmt in ("jpeg", "png", "rgb8; jpeg compressed bgr8", "mono8; png compressed mono8"):
        assert camera_encoding(fmt, compressed=True), fmt
    for fmt in (
        "16UC1; compressedDepth png",
        "32FC1; compressedDepth rvl",
        "16UC1; png compressed",
    ):
        assert not camera_encoding(fmt, compressed=True), fmt


def test_staging_left_by_a_killed_run_is_cleaned(tmp_path):
    from panoptic_ros.bags.writer import StagedBag

    stale = tmp_path / ".out.staging-999999999"  # no such process
    (stale / "out").mkdir(parents=True)
    live = tmp_path / f".out.staging-{os.getppid()}"  # a live process: left alone
    live.mkdir()
    staged = StagedBag(tmp_path / "out")
    assert not stale.exists() and live.exists()
    write_synthetic_bag(staged.path, frames=1, height=16, width=16)
    assert staged.commit() == tmp_path / "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]
    with BagReader(tmp_path / "out") as r:
        assert r.problems == [] and r.topics["/camera/image_raw"].count == 1
