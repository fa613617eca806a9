"""process-bag: real bags, the real default model on ONNX Runtime, output read back with rosbags."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_helpers import EXE, run_cli, summary

pytest.importorskip("vision_msgs.msg", reason="vision_msgs not installed (scripts/setup)")

from panoptic_ros.bags.messages import (  # noqa: E402
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    BagError,
    cdr_header_stamp,
    deserialize,
    serialize,
    typestore,
)
from panoptic_ros.bags.reader import BagReader  # noqa: E402
from panoptic_ros.bags.synthetic import image_message, write_synthetic_bag  # noqa: E402
from panoptic_ros.bags.writer import STORAGES, BagWriter  # noqa: E402
from panoptic_ros.cli import process_bag as pb  # noqa: E402
from panoptic_ros.ros.conversions import ns_to_stamp, stamp_to_ns  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
H, W = 60, 80


@pytest.fixture(scope="module")
def segmenter():
    seg = pb.make_segmenter(pb.load_settings(None, "default", "onnxruntime"))
    yield seg
    seg.close()


def _multi_topic_bag(path: Path, storage: str) -> dict[str, list[int]]:
    """Five camera topics of different encodings, interleaved in time; returns topic -> stamps."""
    cams = {
        "/front/image_raw": "rgb8",
        "/rear/image_raw": "bgr8",
        "/left/image_mono": "mono8",
        "/right/image_raw/compressed": "jpeg",
        "/top/image_raw/compressed": "png",
    }
    stamps: dict[str, list[int]] = {t: [] for t in cams}
    from panoptic_ros.core.synthetic import generate_scene

    with BagWriter(path, storage) as w:
        for i in range(2):
            for k, (topic, enc) in enumerate(cams.items()):
                t = 1_700_000_000_000_000_000 + i * 100_000_000 + k * 1_000_000
                scene = generate_scene(10_000_000 + 10 * i + k, H, W)
                w.write_msg(
                    topic, image_message(scene.image, t, topic.split("/")[1], enc), t + 3_000_000
                )
                stamps[topic].append(t)
    return stamps


@pytest.mark.parametrize("storage", STORAGES)
def test_one_result_per_frame_per_topic(tmp_path, segmenter, storage):
    from rosbags.rosbag2 import Reader
    from vision_msgs.msg import Detection2DArray, LabelInfo

    stamps = _multi_topic_bag(tmp_path / "in", storage)
    stats = pb.process_bag(
        tmp_path / "in",
        tmp_path / "out",
        segmenter=segmenter,
        storage=storage,
        overlay=True,
        panoptic_rgb=True,
    )
    assert (stats.frames, stats.skipped, stats.problems, stats.interrupted) == (10, 0, [], False)
    assert stats.namespaces["/right/image_raw/compressed"] == "/right"
    store = typestore()
    # read back with plain rosbags (its own CDR decoder, not rclpy)
    with Reader(tmp_path / "out") as r:
        assert (tmp_path / "out" / f"out.{'mcap' if storage == 'mcap' else 'db3'}").is_file()
        conns = {c.topic: c for c in r.connections}
        got: dict[str, list[tuple[int, int]]] = {t: [] for t in conns}
        for c, log_time, data in r.messages():
            msg = store.deserialize_cdr(data, c.msgtype)
            st = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            got[c.topic].append((st, log_time))
            if c.msgtype == "vision_msgs/msg/Detection2DArray":
                for d in msg.detections:
                    assert int(d.id) >= 1 and d.bbox.size_x > 0
    for topic, want in stamps.items():
        ns = stats.namespaces[topic]
        assert conns[topic].msgtype in IMAGE_TYPES
        assert got[topic] == [
            (s, s + 3_000_000) for s in want
        ]  # inputs copied with their log times
        for name in ("semantic", "instance", "panoptic", "detections", "overlay", "panoptic_rgb"):
            assert got[f"{ns}/{name}"] == got[topic], (
                name
            )  # same stamps, same log times, one per frame
        assert conns[f"{ns}/detections"].msgtype == "vision_msgs/msg/Detection2DArray"
        assert got[f"{ns}/label_info"] == got[topic][:1]
        assert (
            conns[f"{ns}/label_info"].ext.offered_qos_profiles[0].durability.name
            == "TRANSIENT_LOCAL"
        )
    # and with rclpy, the types the node publishes
    with BagReader(tmp_path / "out") as r:
        recs = {
            x.topic: x
            for x in r.messages(["/front/detections", "/front/label_info", "/front/panoptic"])
        }
        det = deserialize(recs["/front/detections"])
        assert (
            isinstance(det, Detection2DArray)
            and stamp_to_ns(det.header.stamp) == stamps["/front/image_raw"][-1]
        )
        info = deserialize(recs["/front/label_info"])
        assert (
            isinstance(info, LabelInfo)
            and [c.class_name for c in info.class_map] == segmenter.taxonomy.names()
        )
        pan = deserialize(recs["/front/panoptic"])
        assert (pan.encoding, pan.height, pan.width) == ("32SC1", H, W)


def _bad_bag(path: Path) -> tuple[list[int], list[str]]:
    """One topic: good, truncated CDR, short pixel data, good, garbage JPEG, good."""
    from panoptic_ros.core.synthetic import generate_scene

    good_stamps, faults = [], []
    with BagWriter(path, "mcap") as w:
        w.add_topic("/cam/image_raw", IMAGE_TYPE, qos="sensor")
        w.add_topic("/cam2/image_raw/compressed", COMPRESSED_TYPE, qos="sensor")
        for i in range(6):
            t = 1_000_000_000 * (i + 1)
            msg = image_message(generate_scene(10_000_000 + i, H, W).image, t)
            if i == 1:
                w.write("/cam/image_raw", t, serialize(msg)[:40])
                faults.append("/cam/image_raw message #1 (log time 2.000000000 s)")
            elif i == 2:
                msg.data = bytes(msg.data[:100])
                w.write("/cam/image_raw", t, serialize(msg))
                faults.append("/cam/image_raw message #2 (log time 3.000000000 s)")
            elif i == 4:
                from sensor_msgs.msg import CompressedImage

                w.write_msg(
                    "/cam2/image_raw/compressed",
                    CompressedImage(
                        header=msg.header, format="jpeg", data=b"\xff\xd8\xff" + bytes(50)
                    ),
                    t,
                )
                faults.append("/cam2/image_raw/compressed message #0 (log time 5.000000000 s)")
            else:
                w.write("/cam/image_raw", t, serialize(msg))
                good_stamps.append(t)
    return good_stamps, faults


def test_corrupt_payloads_are_skipped_and_named(tmp_path, segmenter):
    good, faults = _bad_bag(tmp_path / "in")
    logged: list[str] = []
    stats = pb.process_bag(
        tmp_path / "in", tmp_path / "out", segmenter=segmenter, log=logged.append
    )
    assert (stats.frames, stats.skipped) == (len(good), 3)
    text = "\n".join(stats.problems)
    for f in faults:
        assert f in text
    assert "corrupt sensor_msgs/msg/Image payload" in text and "truncated" in text
    assert any("skipping" in line for line in logged)
    with BagReader(tmp_path / "out") as r:
        sem = [cdr_header_stamp(x.data) for x in r.messages(["/cam/semantic"])]
        assert sem == good
        # undecodable-but-valid messages are kept as inputs; the corrupt CDR one is not
        assert r.topics["/cam/image_raw"].count == len(good) + 1
        assert r.topics["/cam2/semantic"].count == 0


def test_truncated_input_cli(tmp_path):
    """CLI end to end on a truncated MCAP: good frames written, clear error, exit 1, summary line."""
    bag = write_synthetic_bag(tmp_path / "in", frames=6, height=480, width=640)
    f = next(bag.path.glob("*.mcap"))
    os.truncate(f, int(f.stat().st_size * 0.6))
    proc = run_cli(
        "process-bag",
        str(bag.path),
        str(tmp_path / "out"),
        "--backend",
        "onnxruntime",
        "--storage",
        "sqlite3",
    )
    assert proc.returncode == 1, proc.stderr
    kv = summary(proc.stdout)
    assert {"frames", "skipped", "seconds", "fps", "mean_ms", "p99_ms", "out"} <= set(kv)
    n = int(kv["frames"])
    assert 1 <= n < 6
    assert str(f) in proc.stderr and "byte offset" in proc.stderr
    with BagReader(tmp_path / "out") as r:
        assert r.problems == []
        assert r.topics["/camera/semantic"].count == n
        stamps = [cdr_header_stamp(x.data) for x in r.messages(["/camera/panoptic"])]
    assert stamps == [fr.stamp for fr in bag.frames[:n]]


class _StopAfter:
    """The real segmenter, with a fault injected after ``n`` frames (Ctrl-C or a crash)."""

    def __init__(self, seg, n: int, exc: BaseException) -> None:
        self.seg, self.n, self.exc = seg, n, exc
        self.taxonomy = seg.taxonomy

    def segment(self, img):
        if self.n == 0:
            raise self.exc
        self.n -= 1
        return self.seg.segment(img)


@pytest.mark.parametrize(
    "storage,exc", [("mcap", KeyboardInterrupt()), ("sqlite3", RuntimeError("inference failed"))]
)
@pytest.mark.parametrize("previous", [False, True])
def test_interrupted_run_keeps_out_and_a_partial_bag(tmp_path, segmenter, storage, exc, previous):
    """An interrupted or failed run never replaces OUT: a previous OUT stays byte for byte, and
    what was processed is a valid, finalised OUT.partial."""
    bag = write_synthetic_bag(tmp_path / "in", frames=5, height=H, width=W)
    if previous:
        write_synthetic_bag(tmp_path / "out", frames=1, height=16, width=16)
    before_in, before_out = _tree_digest(tmp_path / "in"), _tree_digest(tmp_path / "out")
    stats = pb.process_bag(
        bag.path,
        tmp_path / "out",
        segmenter=_StopAfter(segmenter, 2, exc),
        storage=storage,
        overwrite=previous,
        log=lambda s: None,
    )
    assert stats.frames == 2
    assert stats.interrupted == isinstance(exc, KeyboardInterrupt)
    assert bool(stats.error) == (not isinstance(exc, KeyboardInterrupt))
    assert _tree_digest(tmp_path / "in") == before_in
    assert _tree_digest(tmp_path / "out") == before_out  # None when there was none
    assert stats.out == tmp_path / "out.partial"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left
    with BagReader(stats.out) as r:
        assert r.problems == [] and not r.recovered
        for name in ("semantic", "instance", "panoptic", "detections"):
            assert r.topics[f"/camera/{name}"].count == 2
        assert r.topics["/camera/label_info"].count == 1


def _tree_digest(path: Path) -> dict[str, str] | None:
    """{relative file: sha256} of a file or directory tree; None if it does not exist."""
    import hashlib

    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
    }


def test_output_must_not_touch_the_input(tmp_path, segmenter):
    """OUT equal to IN, inside IN, or containing IN is refused, --overwrite or not; nothing changes."""
    bag = write_synthetic_bag(tmp_path / "d" / "in", frames=2, height=H, width=W)
    mcap = next(bag.path.glob("*.mcap"))
    before = _tree_digest(tmp_path / "d")
    cases = {
        bag.path: "is the input",
        bag.path / "sub": "inside the input",
        tmp_path / "d": "contain the input",
        tmp_path: "contain the input",
    }
    for out, why in cases.items():
        for overwrite in (False, True):
            for inp in (bag.path, mcap):
                if inp == mcap and out == bag.path / "sub":
                    continue  # "inside" a file is not a path
                with pytest.raises(BagError, match=why if inp == bag.path else "input"):
                    pb.process_bag(
                        inp, out, segmenter=segmenter, overwrite=overwrite, log=lambda s: None
                    )
    with pytest.raises(BagError, match="is the input"):  # through a symlink too
        (tmp_path / "link").symlink_to(bag.path)
        pb.process_bag(bag.path, tmp_path / "link", segmenter=segmenter, overwrite=True)
    assert _tree_digest(tmp_path / "d") == before
    # the CLI refuses before loading the model, with the summary line
    proc = run_cli("process-bag", str(bag.path), str(bag.path), "--overwrite")
    assert proc.returncode == 2 and "is the input" in proc.stderr
    kv = summary(proc.stdout)
    assert (kv["error"], kv["frames"], kv["out"]) == ("input", "0", "-")
    assert "loading model" not in proc.stderr
    assert _tree_digest(tmp_path / "d") == before


def test_overwrite_replaces_a_previous_bag_only_when_done(tmp_path, segmenter):
    bag = write_synthetic_bag(tmp_path / "in", frames=3, height=H, width=W)
    write_synthetic_bag(tmp_path / "out", frames=1, height=16, width=16)
    with pytest.raises(BagError, match="exists already"):
        pb.process_bag(bag.path, tmp_path / "out", segmenter=segmenter)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("keep me")
    with pytest.raises(BagError, match="does not look like a rosbag2"):
        pb.process_bag(bag.path, tmp_path / "notes", segmenter=segmenter, overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "keep me"
    stats = pb.process_bag(
        bag.path, tmp_path / "out", segmenter=segmenter, overwrite=True, log=lambda s: None
    )
    assert stats.out == tmp_path / "out" and stats.frames == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metadata.yaml", "out.mcap"]
    with BagReader(tmp_path / "out") as r:
        assert r.topics["/camera/semantic"].count == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "notes", "out"]


def test_sigterm_mid_run_leaves_in_and_previous_out(tmp_path):
    """SIGTERM to a real CLI run in the middle of the frames: exit 130, summary line, IN and the
    previous OUT byte-identical, the processed part in OUT.partial."""
    import signal
    import time

    n = 400
    bag = write_synthetic_bag(
        tmp_path / "in",
        frames=n,
        height=120,
        width=160,
        encoding="jpeg",
        topic="/camera/image_raw/compressed",
    )
    write_synthetic_bag(tmp_path / "out", frames=2, height=16, width=16)
    before_in, before_out = _tree_digest(tmp_path / "in"), _tree_digest(tmp_path / "out")
    proc = subprocess.Popen(
        [
            str(EXE),
            "process-bag",
            str(bag.path),
            str(tmp_path / "out"),
            "--overwrite",
            "--backend",
            "onnxruntime",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the staging bag exists once frames are being written; then let a few go through
        deadline = time.monotonic() + 240
        staged = None
        while staged is None and proc.poll() is None and time.monotonic() < deadline:
            staged = next(tmp_path.glob(".out.staging-*/out/out.mcap"), None)
            time.sleep(0.05)
        assert staged is not None, "process-bag never started writing"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    kv = summary(out)
    assert kv["interrupted"] == "1" and kv["error"] == "interrupted"
    frames = int(kv["frames"])
    assert frames < n  # interrupted mid-run (usually some dozens of frames in)
    assert _tree_digest(tmp_path / "in") == before_in
    assert _tree_digest(tmp_path / "out") == before_out
    assert kv["out"] == str(tmp_path / "out.partial")
    with BagReader(tmp_path / "out.partial") as r:
        assert r.problems == [] and not r.recovered
        assert r.topics["/camera/semantic"].count == frames
    assert not list(tmp_path.glob(".out.staging-*"))


def test_offline_equals_direct_pipeline(tmp_path, segmenter):
    """The bag holds exactly what Segmenter + Tracker + result_to_messages produce (equal messages; the raw
    CDR may differ only in alignment padding, which Fast CDR leaves uninitialised)."""
    from panoptic_ros.ros.conversions import result_to_messages

    bag = write_synthetic_bag(tmp_path / "in", frames=1, height=H, width=W, keep_images=True)
    pb.process_bag(bag.path, tmp_path / "out", segmenter=segmenter, log=lambda s: None)
    from panoptic_ros.core.tracking import Tracker
    from panoptic_ros.ros import params as P

    tracker = Tracker(P.tracker_config(P.defaults()), segmenter.taxonomy.label_divisor)
    result = tracker.update(segmenter.segment(bag.frames[0].image), bag.frames[0].stamp)
    from std_msgs.msg import Header

    out = result_to_messages(
        result,
        Header(stamp=ns_to_stamp(bag.frames[0].stamp), frame_id="camera"),
        segmenter.taxonomy,
    )
    with BagReader(tmp_path / "out") as r:
        recs = {x.topic: x for x in r.messages()}
    for name in ("semantic", "instance", "panoptic", "detections"):
        assert deserialize(recs[f"/camera/{name}"]) == getattr(out, name), name
    assert len(recs["/camera/semantic"].data) == len(serialize(out.semantic))


def _mixed_bag(path: Path, storage: str = "mcap") -> dict[str, int]:
    """A camera, three depth-like image topics, camera_info, tf, latched tf_static and a custom
    type rclpy cannot import; returns topic -> message count."""
    import numpy as np
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    from sensor_msgs.msg import CameraInfo, CompressedImage
    from std_msgs.msg import Header

    from panoptic_ros.core.synthetic import generate_scene
    from panoptic_ros.ros.conversions import array_to_image_msg

    custom = get_typestore(Stores.EMPTY)
    custom.register(get_types_from_msg("uint8[] blob\nstring note\n", "acme_msgs/msg/Blob"))
    blob_def, _ = custom.generate_msgdef("acme_msgs/msg/Blob", ros_version=2)
    counts: dict[str, int] = {}
    with BagWriter(path, storage) as w:
        w.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", qos="latched")
        w.add_topic("/tf", "tf2_msgs/msg/TFMessage", qos="sensor")  # tf2_msgs: not in our rclpy
        w.add_topic(
            "/acme/blob",
            "acme_msgs/msg/Blob",
            msgdef=blob_def,
            digest=custom.hash_rihs01("acme_msgs/msg/Blob"),
        )

        def put(topic: str, msg, t: int) -> None:
            if isinstance(msg, (bytes, memoryview)):
                w.write(topic, t, msg)
            else:
                w.write_msg(topic, msg, t, qos="sensor")
            counts[topic] = counts.get(topic, 0) + 1

        t0 = 1_700_000_000_000_000_000
        ts = typestore()
        Tf = ts.types["tf2_msgs/msg/TFMessage"]
        Tr = ts.types["geometry_msgs/msg/TransformStamped"]
        Time = ts.types["builtin_interfaces/msg/Time"]
        tr = Tr(
            header=ts.types["std_msgs/msg/Header"](stamp=Time(sec=1, nanosec=2), frame_id="map"),
            child_frame_id="cam",
            transform=ts.types["geometry_msgs/msg/Transform"](
                translation=ts.types["geometry_msgs/msg/Vector3"](x=1.0, y=2.0, z=3.0),
                rotation=ts.types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            ),
        )
        tf = bytes(ts.serialize_cdr(Tf(transforms=[tr]), "tf2_msgs/msg/TFMessage"))
        put("/tf_static", tf, t0)
        for i in range(3):
            t = t0 + i * 100_000_000
            h = Header(stamp=ns_to_stamp(t), frame_id="cam")
            rgb = generate_scene(10_000_000 + i, H, W).image
            put("/cam/image_raw", array_to_image_msg(rgb, "rgb8", h), t + 1)
            depth = np.full((H, W), 1000 + i, np.uint16)
            put("/cam/depth/image_raw", array_to_image_msg(depth, "16UC1", h), t + 2)
            put("/cam/camera_info", CameraInfo(header=h, height=H, width=W, k=[1.0] * 9), t + 3)
            put("/tf", tf, t + 4)
            if i < 2:
                f = array_to_image_msg(np.zeros((H, W), np.int32), "32SC1", h)
                f.encoding = "32FC1"
                put("/cam/depth_f/image", f, t + 5)
            if i == 0:
                put(
                    "/cam/depth/image_raw/compressedDepth",
                    CompressedImage(
                        header=h, format="16UC1; compressedDepth png", data=b"\x00" * 16
                    ),
                    t + 6,
                )
            note = custom.types["acme_msgs/msg/Blob"](
                blob=np.arange(3, dtype=np.uint8), note=f"n{i}"
            )
            put("/acme/blob", bytes(custom.serialize_cdr(note, "acme_msgs/msg/Blob")), t + 7)
    return counts


def _raw(bag: Path) -> tuple[dict, dict[str, list[tuple[int, bytes]]]]:
    """Connections (type, definition, hash, qos) and (log time, bytes) per topic, by rosbags."""
    from rosbags.rosbag2 import Reader

    with Reader(bag) as r:
        conns = {
            c.topic: (c.msgtype, c.msgdef.data, c.digest, c.ext.offered_qos_profiles)
            for c in r.connections
        }
        msgs: dict[str, list[tuple[int, bytes]]] = {t: [] for t in conns}
        for c, t, d in r.messages():
            msgs[c.topic].append((t, bytes(d)))
    return conns, msgs


@pytest.mark.parametrize("storage", STORAGES)
def test_only_camera_images_segmented_and_every_topic_copied(tmp_path, segmenter, storage):
    counts = _mixed_bag(tmp_path / "in", storage)
    logged: list[str] = []
    stats = pb.process_bag(
        tmp_path / "in", tmp_path / "out", segmenter=segmenter, log=logged.append
    )
    assert (stats.frames, stats.skipped, stats.problems) == (3, 0, [])
    assert stats.skipped_topics == {
        "/cam/depth/image_raw": "not a camera image (encoding 16UC1)",
        "/cam/depth/image_raw/compressedDepth": "not a camera image (format '16UC1; compressedDepth png')",
        "/cam/depth_f/image": "not a camera image (encoding 32FC1)",
    }
    kv = dict(x.split("=", 1) for x in stats.summary().split())
    assert kv["skipped_topics"].split(",") == sorted(stats.skipped_topics)
    assert int(kv["copied"]) == sum(counts.values())
    assert any("not segmenting /cam/depth/image_raw" in line for line in logged)
    in_conns, in_msgs = _raw(tmp_path / "in")
    out_conns, out_msgs = _raw(tmp_path / "out")
    for topic in counts:  # same type, definition, hash, QoS; same log times and bytes
        assert out_conns[topic] == in_conns[topic], topic
        assert out_msgs[topic] == in_msgs[topic], topic
    assert stats.copied == counts
    assert len(out_msgs["/cam/semantic"]) == 3
    assert not any(
        t.startswith("/cam/depth/")
        and t != "/cam/depth/image_raw"
        and not t.endswith("compressedDepth")
        for t in out_conns
    )
    # --topics forces a depth topic (16-bit scaled to 8, as the node would)
    stats = pb.process_bag(
        tmp_path / "in",
        tmp_path / "forced",
        segmenter=segmenter,
        topics=["/cam/depth/image_raw"],
        log=lambda s: None,
    )
    assert (stats.frames, stats.skipped_topics) == (3, {})
    assert stats.namespaces == {"/cam/depth/image_raw": "/cam/depth"}
    _, forced = _raw(tmp_path / "forced")
    assert len(forced["/cam/depth/semantic"]) == 3 and "/cam/semantic" not in forced


def test_official_mcap_readers_decode_every_message(tmp_path, segmenter):
    """The output opens with the official mcap + mcap-ros2-support readers and every message
    (node outputs and copied inputs, the custom type included) decodes from its embedded schema."""
    mcap_reader = pytest.importorskip("mcap.reader")
    decoder = pytest.importorskip("mcap_ros2.decoder")
    _mixed_bag(tmp_path / "in")
    stats = pb.process_bag(
        tmp_path / "in", tmp_path / "out", segmenter=segmenter, overlay=True, log=lambda s: None
    )
    seen: dict[str, int] = {}
    with open(tmp_path / "out" / "out.mcap", "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[decoder.DecoderFactory()])
        for _schema, channel, _message, msg in reader.iter_decoded_messages():
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            if channel.topic == "/cam/detections":
                assert msg.header.frame_id == "cam"
            if channel.topic == "/acme/blob":
                assert list(msg.blob) == [0, 1, 2]
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    assert seen == stats.counts
    from panoptic_ros.bags.writer import ros_distro

    assert f"ros_distro: {ros_distro()}" in meta["rosbag2"]["serialized_metadata"]


def test_bare_mcap_written_by_mcap_ros2(tmp_path, segmenter):
    """A bare .mcap from the official mcap_ros2 writer (no metadata.yaml, no type hashes, no
    QoS): camera frames segmented, camera_info and a custom type copied with their definitions
    (hash computed from the definition) and bytes."""
    writer_mod = pytest.importorskip("mcap_ros2.writer")
    from rosbags.rosbag2 import Reader

    from panoptic_ros.core.synthetic import generate_scene

    store = typestore()
    path = tmp_path / "cam.mcap"
    blob_def = "uint8[] blob\nstring note\n"
    with open(path, "wb") as f:
        w = writer_mod.Writer(f)
        s_img = w.register_msgdef(IMAGE_TYPE, store.generate_msgdef(IMAGE_TYPE, ros_version=2)[0])
        s_info = w.register_msgdef(
            "sensor_msgs/msg/CameraInfo",
            store.generate_msgdef("sensor_msgs/msg/CameraInfo", ros_version=2)[0],
        )
        s_blob = w.register_msgdef("acme_msgs/msg/Blob", blob_def)
        for i in range(3):
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            head = {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9}, "frame_id": "cam"}
            rgb = generate_scene(30_000_000 + i, H, W).image
            w.write_message(
                "/cam/image_raw",
                s_img,
                {
                    "header": head,
                    "height": H,
                    "width": W,
                    "encoding": "rgb8",
                    "is_bigendian": 0,
                    "step": W * 3,
                    "data": rgb.tobytes(),
                },
                log_time=t + 1,
            )
            w.write_message(
                "/cam/camera_info",
                s_info,
                {"header": head, "height": H, "width": W, "k": [float(i)] * 9},
                log_time=t + 2,
            )
            w.write_message(
                "/acme/blob", s_blob, {"blob": b"\x01\x02", "note": f"n{i}"}, log_time=t + 3
            )
        w.finish()
    stats = pb.process_bag(path, tmp_path / "out", segmenter=segmenter, log=lambda s: None)
    assert (stats.frames, stats.skipped) == (3, 0)
    assert stats.copied == {"/acme/blob": 3, "/cam/camera_info": 3, "/cam/image_raw": 3}
    with BagReader(path) as src:
        want = {t: [(x.log_time, x.data) for x in src.messages([t])] for t in stats.copied}
    with Reader(tmp_path / "out") as r:
        conns = {c.topic: c for c in r.connections}
        got: dict[str, list] = {}
        for c, t, d in r.messages():
            got.setdefault(c.topic, []).append((t, bytes(d)))
    for t in stats.copied:
        assert got[t] == want[t], t
    assert conns["/cam/camera_info"].digest == store.hash_rihs01("sensor_msgs/msg/CameraInfo")
    assert conns["/acme/blob"].digest.startswith("RIHS01_")
    assert conns["/acme/blob"].msgdef.data.startswith("uint8[] blob")
    assert len(got["/cam/semantic"]) == 3


def test_tracking_parameters_on_the_command_line(tmp_path, capsys):
    """--param tracking*=... are the node's tracking parameters (checked like the node's);
    tracking=false writes per-frame ids 1..N, in the order of the detections."""
    from panoptic_ros.cli import main

    bag = write_synthetic_bag(tmp_path / "in", frames=2, height=H, width=W).path
    base = ["process-bag", str(bag), "--model", "default", "--backend", "onnxruntime"]
    assert main(base + [str(tmp_path / "o1"), "--param", "tracking_min_iou=0"]) == 2
    assert "tracking_min_iou" in capsys.readouterr().err
    assert main(base + [str(tmp_path / "o2"), "--param", "tracking=false"]) == 0
    with BagReader(tmp_path / "o2") as r:
        dets = [deserialize(x) for x in r.messages(["/camera/detections"])]
    assert len(dets) == 2
    for d in dets:
        assert [x.id for x in d.detections] == [str(k) for k in range(1, len(d.detections) + 1)]
        # untracked: the pose stays all zero, as before tracking existed
        assert all(not x.results[0].pose.covariance.any() for x in d.detections)


def test_a_result_the_tracker_refuses_is_skipped_like_the_node(tmp_path, segmenter):
    """The real model's result for frame 2 with one instance record dropped (its pixels stay: a
    family bug): that frame is skipped and named, the others are written with their track ids
    (it once ended the whole run)."""
    import dataclasses

    class DropsARecord:
        def __init__(self, seg):
            self.taxonomy, self._seg, self.n = seg.taxonomy, seg, 0

        def segment(self, img):
            r = self._seg.segment(img)
            self.n += 1
            return dataclasses.replace(r, instances=r.instances[1:]) if self.n == 2 else r

    bag = write_synthetic_bag(tmp_path / "in", frames=3, height=H, width=W)
    stats = pb.process_bag(
        bag.path, tmp_path / "out", segmenter=DropsARecord(segmenter), log=lambda s: None
    )
    assert (stats.frames, stats.skipped) == (2, 1) and not stats.error
    assert "outside the listed instances" in "\n".join(stats.problems)
