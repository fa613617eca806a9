"""The shipped Fast DDS profile (config/fastdds_large_frames.xml) and where it is applied.

The DDS test is real: a publisher process sends 480x640 rgb8 frames (0.9 MB, larger than Fast
DDS's default 512 KiB shared-memory segment) best effort at 10 Hz to a subscriber process, both
with the profiles-file variable of the Fast DDS in use (FASTRTPS_ for 2.x / Jazzy, FASTDDS_ for
3.x / Kilted: dds_profile.profile_env) pointing at the shipped profile, and (nearly) all must
arrive. Without the profile most are lost on some hosts; that is host-dependent and not asserted.
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
    env.pop(dds_profile.FASTDDS_VAR, None)
    env.pop(dds_profile.FASTRTPS_VAR, None)
    if profile is not None:
        env.update(dds_profile.profile_env(profile))
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
    for var in (dds_profile.FASTDDS_VAR, dds_profile.FASTRTPS_VAR):
        monkeypatch.setenv(var, "")  # recorded, so what use_large_shm sets is undone after the test
        monkeypatch.delenv(var)
    assert use_large_shm(16) == PROFILE and os.environ[dds_profile.profile_var()] == str(PROFILE)
    other = use_large_shm(32)
    assert other != PROFILE and "33554432" in other.read_text()
    # no second copy of the XML in code
    assert (
        "<transport_descriptor>" not in (ROOT / "panoptic_ros" / "bench" / "loadgen.py").read_text()
    )


def test_apply_never_overrides_the_users_setting(tmp_path):
    var = dds_profile.profile_var()
    mine = tmp_path / "mine.xml"
    mine.write_text(PROFILE.read_text())
    env: dict = {}
    assert dds_profile.apply(None, env) == str(PROFILE) and env == {var: str(PROFILE)}
    env = {var: "/user/profile.xml"}
    assert dds_profile.apply(str(mine), env) == "/user/profile.xml"
    assert env == {var: "/user/profile.xml"}
    env = {}
    assert dds_profile.apply("none", env) is None and env == {}
    assert dds_profile.apply(str(mine), env) == str(mine) and env == {var: str(mine)}
    with pytest.raises(FileNotFoundError):
        dds_profile.apply(str(tmp_path / "missing.xml"), {})


@pytest.mark.parametrize("version", [(2, 14), (3, 2)], ids=["fastdds2", "fastdds3"])
def test_the_variable_follows_the_fast_dds_version(monkeypatch, version):
    """2.x reads only FASTRTPS_ (Jazzy ignores FASTDDS_ without a word: a FASTDDS_ setting is passed
    on under FASTRTPS_); 3.x reads FASTDDS_ and, through rmw_fastrtps, the deprecated FASTRTPS_."""
    monkeypatch.setattr(dds_profile, "fastdds_version", lambda: (version, "test"))
    v2 = version[0] == 2
    var = dds_profile.FASTRTPS_VAR if v2 else dds_profile.FASTDDS_VAR
    assert dds_profile.profile_var() == var
    assert dds_profile.profile_env(PROFILE) == {var: str(PROFILE)}
    assert dds_profile.launch_env(str(PROFILE), {}) == {var: str(PROFILE)}
    assert dds_profile.hint({}).startswith(f"best-effort input and no {var}:")
    both = {dds_profile.FASTDDS_VAR: "/a.xml", dds_profile.FASTRTPS_VAR: "/b.xml"}
    assert dds_profile.user_profile(both) == ("/b.xml" if v2 else "/a.xml")
    old = {dds_profile.FASTRTPS_VAR: "/old.xml"}
    assert dds_profile.user_profile(old) == "/old.xml"  # read by 2.x, and by rmw on 3.x
    assert dds_profile.launch_env(str(PROFILE), old) == {}
    new = {dds_profile.FASTDDS_VAR: "/new.xml"}
    assert dds_profile.user_profile(new) == (None if v2 else "/new.xml")
    assert dds_profile.ignored_profile(new) == ("/new.xml" if v2 else None)
    assert dds_profile.launch_env(str(PROFILE), new) == (
        {dds_profile.FASTRTPS_VAR: "/new.xml"} if v2 else {}
    )
    env = dict(new)
    assert dds_profile.apply(None, env) == "/new.xml"
    assert env == (dict(new, **{dds_profile.FASTRTPS_VAR: "/new.xml"}) if v2 else new)
    if v2:
        assert f"ignores {dds_profile.FASTDDS_VAR}=/new.xml" in dds_profile.hint(new)


def test_fast_dds_version_is_read_from_the_library_rmw_fastrtps_links():
    """Before rclpy.init: from librmw_fastrtps_cpp.so's SONAME; after it: from the library
    mapped into the process. Both must agree, and with the installed wheel where there is one."""
    code = (
        "from panoptic_ros.ros import dds_profile as d\n"
        "before = d.fastdds_version()\n"
        "import rclpy\n"
        "rclpy.init()\n"
        "d.fastdds_version.cache_clear()\n"
        "after = d.fastdds_version()\n"
        "rclpy.shutdown()\n"
        "print(repr((before, after)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=ros_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    (before, how_before), (after, how_after) = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert "librmw_fastrtps_cpp.so links" in how_before, how_before
    assert how_after == "the Fast DDS library loaded in this process"
    assert before == after and len(after) == 2 and after[0] in (2, 3), (before, after)
    import importlib.metadata as md

    for dist in ("ros-fastdds", "ros-fastrtps"):
        try:
            wheel = md.version(dist)
        except md.PackageNotFoundError:
            continue
        assert tuple(int(x) for x in wheel.split(".")[:2]) == after, (dist, wheel, after)


def test_commands_offer_dds_profile_option():
    import argparse

    from panoptic_ros.cli import demo, replay

    for mod in (replay, demo):
        p = argparse.ArgumentParser()
        mod.add_arguments(p)
        args = p.parse_args((["bag"] if mod is replay else []) + ["--dds-profile", "none"])
        assert args.dds_profile == "none"


def test_launch_files_default_to_the_shipped_profile_unless_the_user_set_one():
    # the launch files take the argument and the node from ros/launch_parts.py (one copy)
    for path in sorted((ROOT / "launch").glob("*.launch.py")):
        text = path.read_text()
        assert "launch_parts.common_arguments(share)" in text, path.name
        assert "launch_parts.panoptic_node(" in text, path.name
        assert '"dds_profile"' not in text, path.name  # not declared twice
    text = (ROOT / "panoptic_ros" / "ros" / "launch_parts.py").read_text()
    tree = ast.parse(text)
    decl = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", None) == "DeclareLaunchArgument"
        and ast.literal_eval(n.args[0]) == "dds_profile"
    ]
    assert len(decl) == 1
    default = next(k.value for k in decl[0].keywords if k.arg == "default_value")
    assert "dds_profile.PROFILE_FILE" in ast.unparse(default)
    assert dds_profile.PROFILE_FILE == "fastdds_large_frames.xml"
    # the variable and the user's-profile rule live in dds_profile.launch_env (test_launch.py)
    assert "additional_env=dds_profile.launch_env(" in text


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
    hint = f"no {dds_profile.profile_var()}"
    assert any("camera ''" in ln for ln in lines["profile"]), lines
    assert sum(hint in ln for ln in lines["bare"]) == 1, lines["bare"]
    assert any("fastdds_large_frames.xml" in ln for ln in lines["bare"] if hint in ln)
    assert not any(hint in ln for ln in lines["profile"]), lines["profile"]
