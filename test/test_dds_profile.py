"""The shipped Fast DDS profile (config/fastdds_large_frames.xml) and where it is applied.

The DDS test is real: a publisher process sends 480x640 rgb8 frames (0.9 MB, larger than Fast
DDS's default 512 KiB shared-memory segment) best effort at 10 Hz to a subscriber process, both
with FASTDDS_DEFAULT_PROFILES_FILE pointing at the shipped profile, and (nearly) all must arrive.
Without the profile most are lost on some hosts; that is host-dependent and not asserted here.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from panoptic_ros.bench.loadgen import ros_env, use_large_shm
from panoptic_ros.ros import dds_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_frames.xml"
NS = "{http://www.eprosima.com}"
BIN = Path(sys.executable).parent

PUBLISHER = r"""
import array, sys, time
import numpy as np, rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
topic, n, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("dds_profile_test_pub")
pub = node.create_publisher(Image, topic, QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                                                     reliability=ReliabilityPolicy.BEST_EFFORT))
deadline = time.monotonic() + 15
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)  # let the reader match this writer too
msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
msg.data = array.array("B", np.random.default_rng(0).integers(0, 256, 480 * 640 * 3, dtype=np.uint8).tobytes())
t0 = time.monotonic()
for i in range(n):
    msg.header.frame_id = str(i)
    pub.publish(msg)
    time.sleep(max(0.0, t0 + (i + 1) / hz - time.monotonic()))
time.sleep(0.5)
print(f"published={n} matched={pub.get_subscription_count()}", flush=True)
node.destroy_node()
rclpy.shutdown()
"""

SUBSCRIBER = r"""
import sys, time
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
topic, n, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("dds_profile_test_sub")
got = set()
def on_image(m):
    if len(m.data) == m.height * m.step == 480 * 640 * 3:
        got.add(m.header.frame_id)
node.create_subscription(Image, topic, on_image, QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                                                            reliability=ReliabilityPolicy.BEST_EFFORT))
print("ready", flush=True)
deadline, seen_pub, gone = time.monotonic() + limit, False, None
while time.monotonic() < deadline and len(got) < n:
    rclpy.spin_once(node, timeout_sec=0.05)
    pubs = node.count_publishers(topic)
    seen_pub = seen_pub or pubs > 0
    if seen_pub and pubs == 0:
        gone = gone or time.monotonic()
        if time.monotonic() - gone > 1.0:
            break
print(f"received={len(got)}", flush=True)
node.destroy_node()
rclpy.shutdown()
"""


def _env(profile: Path | None) -> dict:
    env = ros_env()
    env.pop(dds_profile.ENV, None)
    env.pop(dds_profile.LEGACY_ENV, None)
    if profile is not None:
        env[dds_profile.ENV] = str(profile)
    return env


def _value(out: str, key: str) -> int:
    return int(next(w for w in out.split() if w.startswith(key + "=")).split("=", 1)[1])


# ---- the profile file ---------------------------------------------------------------------
def test_shipped_profile_is_a_default_participant_with_large_shm_and_udp():
    assert dds_profile.shipped_profile() == PROFILE
    root = ET.parse(PROFILE).getroot()
    assert root.tag == NS + "dds"
    descs = {d.findtext(NS + "transport_id"): d for d in root.iter(NS + "transport_descriptor")}
    types = {tid: d.findtext(NS + "type") for tid, d in descs.items()}
    assert sorted(types.values()) == ["SHM", "UDPv4"]
    shm = next(d for d in descs.values() if d.findtext(NS + "type") == "SHM")
    assert int(shm.findtext(NS + "segment_size")) == 16 * 2**20
    assert int(shm.findtext(NS + "maxMessageSize")) <= int(shm.findtext(NS + "segment_size"))
    parts = list(root.iter(NS + "participant"))
    assert len(parts) == 1 and parts[0].get("is_default_profile") == "true"
    rtps = parts[0].find(NS + "rtps")
    assert [t.text for t in rtps.find(NS + "userTransports")] == list(descs)
    assert rtps.findtext(NS + "useBuiltinTransports") == "false"
    # nothing else: no QoS, no data writer/reader profiles, no library settings
    assert {c.tag for c in root.find(NS + "profiles")} == {
        NS + "transport_descriptors",
        NS + "participant",
    }
    assert {c.tag for c in rtps} == {NS + "userTransports", NS + "useBuiltinTransports"}


def test_profile_xml_templates_the_segment_size_and_loadgen_reuses_the_shipped_file(monkeypatch):
    text = dds_profile.profile_xml(64)
    shm = next(
        d
        for d in ET.fromstring(text).iter(NS + "transport_descriptor")
        if d.findtext(NS + "type") == "SHM"
    )
    assert (
        int(shm.findtext(NS + "segment_size"))
        == int(shm.findtext(NS + "maxMessageSize"))
        == 64 * 2**20
    )
    assert dds_profile.profile_xml(16) == PROFILE.read_text()
    monkeypatch.delenv(dds_profile.ENV, raising=False)
    assert use_large_shm(16) == PROFILE and os.environ[dds_profile.ENV] == str(PROFILE)
    other = use_large_shm(32)
    assert other != PROFILE and "33554432" in other.read_text()
    # no second copy of the XML in code
    assert (
        "<transport_descriptor>" not in (ROOT / "panoptic_ros" / "bench" / "loadgen.py").read_text()
    )


def test_apply_never_overrides_the_users_setting(tmp_path):
    mine = tmp_path / "mine.xml"
    mine.write_text(PROFILE.read_text())
    env: dict = {}
    assert dds_profile.apply(None, env) == str(PROFILE) and env[dds_profile.ENV] == str(PROFILE)
    for var in (dds_profile.ENV, dds_profile.LEGACY_ENV):
        env = {var: "/user/profile.xml"}
        assert dds_profile.apply(str(mine), env) == "/user/profile.xml"
        assert env == {var: "/user/profile.xml"}
    env = {}
    assert dds_profile.apply("none", env) is None and env == {}
    assert dds_profile.apply(str(mine), env) == str(mine) and env[dds_profile.ENV] == str(mine)
    with pytest.raises(FileNotFoundError):
        dds_profile.apply(str(tmp_path / "missing.xml"), {})


def test_commands_offer_dds_profile_option():
    import argparse

    from panoptic_ros.cli import demo, replay

    for mod in (replay, demo):
        p = argparse.ArgumentParser()
        mod.add_arguments(p)
        args = p.parse_args((["bag"] if mod is replay else []) + ["--dds-profile", "none"])
        assert args.dds_profile == "none"


def test_launch_files_default_to_the_shipped_profile_unless_the_user_set_one():
    for path in sorted((ROOT / "launch").glob("*.launch.py")):
        text = path.read_text()
        tree = ast.parse(text)
        decl = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and getattr(n.func, "id", None) == "DeclareLaunchArgument"
            and ast.literal_eval(n.args[0]) == "dds_profile"
        ]
        assert len(decl) == 1, path.name
        default = next(k.value for k in decl[0].keywords if k.arg == "default_value")
        assert "fastdds_large_frames.xml" in ast.unparse(default), path.name
        # the variable and the user's-profile rule live in dds_profile.launch_env (test_launch.py)
        assert "additional_env=dds_profile.launch_env(" in text, path.name


# ---- real DDS -----------------------------------------------------------------------------
def _run_pair(profile: Path | None, frames: int = 20, hz: float = 10.0) -> tuple[int, int, str]:
    topic = f"/dds_profile_test_{os.getpid()}_{time.monotonic_ns()}/image"
    env = _env(profile)
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, topic, str(frames), "15"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sub.stdout.readline().strip() == "ready"
        pub = subprocess.run(
            [sys.executable, "-c", PUBLISHER, topic, str(frames), str(hz)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        out, _ = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    logs = pub.stdout + pub.stderr + out
    assert pub.returncode == 0 and sub.returncode == 0, logs
    return _value(pub.stdout, "published"), _value(out, "received"), logs


def test_large_best_effort_frames_arrive_with_the_shipped_profile():
    published, received, logs = _run_pair(PROFILE)
    assert "XMLPARSER" not in logs and "Error" not in logs, logs  # Fast DDS accepted the profile
    assert published == 20
    assert received >= 18, (
        f"only {received} of {published} 480x640 rgb8 frames arrived with the profile\n{logs}"
    )


def test_node_hints_at_the_profile_only_without_one():
    ns = f"/dds_profile_hint_{os.getpid()}"
    cmd = [
        str(BIN / "panoptic_node"),
        "--ros-args",
        "-r",
        f"__ns:={ns}",
        "-r",
        f"image:={ns}/image",
        "-p",
        "input_qos:=sensor_data",  # best effort from the start (auto hints once it picks best effort)
    ]
    procs = {
        name: subprocess.Popen(
            cmd, env=_env(p), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, p in (("bare", None), ("profile", PROFILE))
    }
    lines: dict[str, list[str]] = {name: [] for name in procs}
    readers = [
        threading.Thread(target=lambda n=n, p=p: lines[n].extend(p.stdout), daemon=True)
        for n, p in procs.items()
    ]
    for t in readers:
        t.start()
    try:
        deadline = time.monotonic() + 60
        # "camera '': <topic> (Image, sensor_data)" is logged on activate, after the hint would be
        while time.monotonic() < deadline and not all(
            any("camera ''" in ln for ln in ls) for ls in lines.values()
        ):
            assert all(p.poll() is None for p in procs.values()), lines
            time.sleep(0.1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in readers:
            t.join(timeout=5)
    hint = f"no {dds_profile.ENV}"
    assert any("camera ''" in ln for ln in lines["profile"]), lines
    assert sum(hint in ln for ln in lines["bare"]) == 1, lines["bare"]
    assert any("fastdds_large_frames.xml" in ln for ln in lines["bare"] if hint in ln)
    assert not any(hint in ln for ln in lines["profile"]), lines["profile"]
