"""replay: real bags published over real DDS (domain from conftest), to a subscriber and to the real node."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli, summary

from panoptic_ros.bags.messages import COMPRESSED_TYPE, IMAGE_TYPE, cdr_header_stamp
from panoptic_ros.bags.reader import BagReader
from panoptic_ros.bags.recorder import TopicRecorder
from panoptic_ros.bags.synthetic import write_synthetic_bag
from panoptic_ros.bags.writer import BagWriter


def _replay_cli(bag: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("replay", str(bag), *extra, timeout=timeout)


def test_replay_paced_with_clock(tmp_path, rclpy_global):
    """Every frame arrives with its original stamp, paced by the recorded times; /clock follows the bag."""
    bag = write_synthetic_bag(
        tmp_path / "bag",
        frames=6,
        height=48,
        width=64,
        fps=10.0,
        encoding="jpeg",
        topic="/cam/image_raw/compressed",
    )
    topic = f"/t_replay_paced_{os.getpid()}/image_raw/compressed"
    writer = BagWriter(tmp_path / "rec").open()
    rec = TopicRecorder(
        writer,
        {topic: COMPRESSED_TYPE, "/clock": "rosgraph_msgs/msg/Clock"},
        node_name="t_replay_rec",
    ).start()
    try:
        proc = _replay_cli(
            bag.path,
            "--remap",
            f"/cam/image_raw/compressed:={topic}",
            "--rate",
            "2",
            "--clock",
            "100",
            "--wait-for-subscribers",
            "20",
        )
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 10
        while len(rec.stamps[topic]) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rec.stop()
        writer.close()
    kv = summary(proc.stdout)
    assert (kv["frames"], kv["topics"], kv["skipped"], kv["loops"]) == ("6", "1", "0", "1")
    # paced: 0.5 s of recording at rate 2 takes at least 0.25 s (sleeps only lengthen it, so the
    # bound holds on any machine; how fast replay is belongs to `panoptic-ros bench`)
    assert float(kv["seconds"]) >= 0.2
    assert rec.stamps[topic] == [f.stamp for f in bag.frames]
    # /clock carries bag time: within the recording, never before its first log time
    clock = []
    with BagReader(tmp_path / "rec") as r:
        for x in r.messages(["/clock"]):
            clock.append(cdr_header_stamp(x.data))  # Clock's first field is a Time, like a Header's
    first, last = bag.frames[0].stamp + 2_000_000, bag.frames[-1].stamp + 2_000_000
    assert len(clock) >= 6 and all(first <= c <= last for c in clock)


def test_replay_errors(tmp_path):
    bag = write_synthetic_bag(tmp_path / "bag", frames=1, height=16, width=16)
    proc = _replay_cli(bag.path, "--topics", "/nope")
    assert proc.returncode == 2 and "no topic '/nope'" in proc.stderr
    proc = _replay_cli(tmp_path / "missing")
    assert proc.returncode == 2 and "no such bag" in proc.stderr


def test_replay_to_real_node_rate0(tmp_path, rclpy_global, record_property):
    """Replay as fast as possible into panoptic_node: every stamp on `semantic` is a replayed frame's,
    in order, without duplicates; the last frame always arrives (latest-frame policy); the rest are
    the drops that policy implies (reported).

    The node's input is reliable here (``input_qos:=reliable``, its documented option for reliable
    sources such as replay) so that DDS itself loses nothing and every missing frame is the
    latest-frame slot's doing. Over best effort the last frame can be lost in transport (CI once
    lost it; most likely a burst that went over UDP, where best effort has no repair); that
    transport behaviour is what test_dds_profile measures."""
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built")
    n = 20
    bag = write_synthetic_bag(tmp_path / "bag", frames=n, height=240, width=320)
    ns = f"/t_replay_node_{os.getpid()}"
    from ros_helpers import NodeProcess

    node = NodeProcess(
        ns, "-p", "threads:=1", "-p", "input_qos:=reliable", "-r", f"image:={ns}/camera/image_raw"
    )
    writer = BagWriter(tmp_path / "rec").open()
    rec = None
    try:
        topics = {
            f"{ns}/semantic": IMAGE_TYPE,
            f"{ns}/detections": "vision_msgs/msg/Detection2DArray",
            f"{ns}/label_info": "vision_msgs/msg/LabelInfo",
        }
        rec = TopicRecorder(
            writer, topics, latched=[f"{ns}/label_info"], node_name="t_replay_node_rec"
        ).start()
        deadline = time.monotonic() + 120
        while rec.publisher_count(f"{ns}/semantic") == 0:
            assert node.alive(), node.output
            assert time.monotonic() < deadline, "panoptic_node did not come up"
            time.sleep(0.1)
        proc = _replay_cli(
            bag.path,
            "--remap",
            f"/camera/image_raw:={ns}/camera/image_raw",
            "--rate",
            "0",
            "--wait-for-subscribers",
            "30",
            "--start-delay",
            "0.5",
        )
        assert proc.returncode == 0, proc.stderr
        assert summary(proc.stdout)["frames"] == str(n)
        sent = [f.stamp for f in bag.frames]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            got = rec.stamps[f"{ns}/semantic"]
            if got and got[-1] == sent[-1] and time.monotonic() - rec.last_arrival > 1.0:
                break
    finally:
        if rec is not None:
            rec.stop()
        writer.close()
        rc = node.stop()
    assert rc == 0, node.output
    got = rec.stamps[f"{ns}/semantic"]
    dropped = n - len(got)
    record_property("replay_rate0_sent", n)
    record_property("replay_rate0_received", len(got))
    record_property("replay_rate0_dropped", dropped)
    print(
        f"\nreplay --rate 0 into panoptic_node: sent {n}, semantic received {len(got)}, dropped {dropped}"
    )
    assert got, "no output at all"
    assert set(got) <= set(sent) and got == sorted(set(got)), (
        "unknown, duplicated or reordered stamps"
    )
    assert got[-1] == sent[-1], "the newest frame must always be processed (latest-frame slot)"
    assert rec.stamps[f"{ns}/detections"] == got
    assert len(rec.stamps[f"{ns}/label_info"]) == 1


def test_sigterm_ends_a_looping_replay(tmp_path):
    """`replay --loop` runs until stopped; SIGTERM (what ros2 launch and systemd send) ends it
    like Ctrl-C: exit 0, its summary line with interrupted=1, no traceback."""
    import signal

    from cli_helpers import EXE

    bag = write_synthetic_bag(tmp_path / "bag", frames=3, height=16, width=16, fps=30.0)
    topic = f"/t_replay_sigterm_{os.getpid()}/image_raw"
    proc = subprocess.Popen(
        [str(EXE), "replay", str(bag.path), "--loop", "--remap", f"/camera/image_raw:={topic}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4.0)  # importing rclpy, then looping; the signal may land in either
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    kv = summary(out)
    assert kv.get("interrupted") == "1" or kv.get("error") == "interrupted", out
