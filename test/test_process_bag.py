"""process-bag: real bags, the real default model on ONNX Runtime, output read back with rosbags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vision_msgs.msg", reason="vision_msgs not installed (scripts/setup)")

from panoptic_ros.bags import bagtools as bt  # noqa: E402
from panoptic_ros.cli import process_bag as pb  # noqa: E402

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
    from panoptic_ros.training.synthetic import generate_scene

    with bt.BagWriter(path, storage) as w:
        for i in range(2):
            for k, (topic, enc) in enumerate(cams.items()):
                t = 1_700_000_000_000_000_000 + i * 100_000_000 + k * 1_000_000
                scene = generate_scene(10_000_000 + 10 * i + k, H, W)
                w.write_msg(
                    topic, bt.image_message(scene.image, t, topic.split("/")[1], enc), t + 3_000_000
                )
                stamps[topic].append(t)
    return stamps


@pytest.mark.parametrize("storage", bt.STORAGES)
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
    store = bt.typestore()
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
        assert conns[topic].msgtype in bt.IMAGE_TYPES
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
    with bt.BagReader(tmp_path / "out") as r:
        recs = {
            x.topic: x
            for x in r.messages(["/front/detections", "/front/label_info", "/front/panoptic"])
        }
        det = bt.deserialize(recs["/front/detections"])
        assert (
            isinstance(det, Detection2DArray)
            and bt.stamp_ns(det.header) == stamps["/front/image_raw"][-1]
        )
        info = bt.deserialize(recs["/front/label_info"])
        assert (
            isinstance(info, LabelInfo)
            and [c.class_name for c in info.class_map] == segmenter.taxonomy.names()
        )
        pan = bt.deserialize(recs["/front/panoptic"])
        assert (pan.encoding, pan.height, pan.width) == ("32SC1", H, W)


def _bad_bag(path: Path) -> tuple[list[int], list[str]]:
    """One topic: good, truncated CDR, short pixel data, good, garbage JPEG, good."""
    from panoptic_ros.training.synthetic import generate_scene

    good_stamps, faults = [], []
    with bt.BagWriter(path, "mcap") as w:
        w.add_topic("/cam/image_raw", bt.IMAGE_TYPE, qos="sensor")
        w.add_topic("/cam2/image_raw/compressed", bt.COMPRESSED_TYPE, qos="sensor")
        for i in range(6):
            t = 1_000_000_000 * (i + 1)
            msg = bt.image_message(generate_scene(10_000_000 + i, H, W).image, t)
            if i == 1:
                w.write("/cam/image_raw", t, bt.serialize(msg)[:40])
                faults.append("/cam/image_raw message #1 (log time 2.000000000 s)")
            elif i == 2:
                msg.data = bytes(msg.data[:100])
                w.write("/cam/image_raw", t, bt.serialize(msg))
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
                w.write("/cam/image_raw", t, bt.serialize(msg))
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
    with bt.BagReader(tmp_path / "out") as r:
        sem = [bt.cdr_header_stamp(x.data) for x in r.messages(["/cam/semantic"])]
        assert sem == good
        # undecodable-but-valid messages are kept as inputs; the corrupt CDR one is not
        assert r.topics["/cam/image_raw"].count == len(good) + 1
        assert r.topics["/cam2/semantic"].count == 0


def test_truncated_input_cli(tmp_path):
    """CLI end to end on a truncated MCAP: good frames written, clear error, exit 1, summary line."""
    bag = bt.write_synthetic_bag(tmp_path / "in", frames=6, height=480, width=640)
    f = next(bag.path.glob("*.mcap"))
    os.truncate(f, int(f.stat().st_size * 0.6))
    exe = Path(sys.executable).with_name("panoptic-ros")
    proc = subprocess.run(
        [
            str(exe),
            "process-bag",
            str(bag.path),
            str(tmp_path / "out"),
            "--backend",
            "onnxruntime",
            "--storage",
            "sqlite3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    kv = dict(item.split("=", 1) for item in last.split())
    assert {"frames", "skipped", "seconds", "fps", "mean_ms", "p99_ms", "out"} <= set(kv)
    n = int(kv["frames"])
    assert 1 <= n < 6
    assert str(f) in proc.stderr and "byte offset" in proc.stderr
    with bt.BagReader(tmp_path / "out") as r:
        assert r.problems == []
        assert r.topics["/camera/semantic"].count == n
        stamps = [bt.cdr_header_stamp(x.data) for x in r.messages(["/camera/panoptic"])]
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
def test_interrupted_run_leaves_a_valid_bag(tmp_path, segmenter, storage, exc):
    bag = bt.write_synthetic_bag(tmp_path / "in", frames=5, height=H, width=W)
    stats = pb.process_bag(
        bag.path,
        tmp_path / "out",
        segmenter=_StopAfter(segmenter, 2, exc),
        storage=storage,
        log=lambda s: None,
    )
    assert stats.frames == 2
    assert stats.interrupted == isinstance(exc, KeyboardInterrupt)
    assert bool(stats.error) == (not isinstance(exc, KeyboardInterrupt))
    assert (tmp_path / "out" / "metadata.yaml").is_file()
    with bt.BagReader(tmp_path / "out") as r:
        assert r.problems == [] and not r.recovered
        for name in ("semantic", "instance", "panoptic", "detections"):
            assert r.topics[f"/camera/{name}"].count == 2
        assert r.topics["/camera/label_info"].count == 1


def test_offline_equals_direct_pipeline(tmp_path, segmenter):
    """The bag holds exactly what Segmenter + result_to_messages produce (equal messages; the raw
    CDR may differ only in alignment padding, which Fast CDR leaves uninitialised)."""
    from panoptic_ros.ros.conversions import result_to_messages

    bag = bt.write_synthetic_bag(tmp_path / "in", frames=1, height=H, width=W, keep_images=True)
    pb.process_bag(bag.path, tmp_path / "out", segmenter=segmenter, log=lambda s: None)
    result = segmenter.segment(bag.frames[0].image)
    from std_msgs.msg import Header

    out = result_to_messages(
        result,
        Header(stamp=bt.stamp_of(bag.frames[0].stamp), frame_id="camera"),
        segmenter.taxonomy,
    )
    with bt.BagReader(tmp_path / "out") as r:
        recs = {x.topic: x for x in r.messages()}
    for name in ("semantic", "instance", "panoptic", "detections"):
        assert bt.deserialize(recs[f"/camera/{name}"]) == getattr(out, name), name
    assert len(recs["/camera/semantic"].data) == len(bt.serialize(out.semantic))
