"""The launch files run for real, as ``ros2 launch`` runs them, and the node answers through them.

``launch`` and ``launch_ros`` have no PyPI wheel; the upstream pure-Python packages are kept,
unchanged, in ``<repo>/../shared/thirdparty`` (or ``$PANOPTIC_THIRDPARTY``); the tests skip, with
that reason, only where the folder is absent. Each launch runs in a child process (like ``ros2
launch``: ``launch.LaunchService`` + ``IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
launch_arguments=...)``) against an ament prefix this module builds with the same code as
scripts/setup (``scripts/ament_prefix.py``), so launch_ros finds ``share/panoptic_ros`` and
``lib/panoptic_ros/panoptic_node`` exactly as in a colcon install. Checked per launch file: frames
published on the remapped input topics come back on every output topic under the namespace with
their stamps, per camera; the node reports the parameters the launch file set (including the
``cameras`` list launch_ros writes as ``!!python/tuple``); Ctrl-C (SIGINT to the launch process
group, as a terminal sends it) ends launch and node with exit status 0 and no Traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from proc_helpers import OutputProcess, child_env

from panoptic_ros.ros import dds_profile, params

ROOT = Path(__file__).resolve().parents[1]
THIRDPARTY = Path(os.environ.get("PANOPTIC_THIRDPARTY") or ROOT.parent / "shared" / "thirdparty")
OUTPUTS = ("semantic", "instance", "panoptic", "overlay", "detections")
FRAMES, HZ = 10, 2.0
TAG = f"tl{os.getpid()}"

# The launch process: what `ros2 launch FILE ARGS...` does, with the upstream packages.
LAUNCHER = r"""
import json, sys
from pathlib import Path
third = Path(sys.argv[1])
sys.path.insert(0, str(third))
try:
    import composition_interfaces.srv  # noqa: F401  (launch_ros.actions imports it)
except ImportError:
    sys.path.insert(1, str(third / "stubs"))
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
mode, path, args = sys.argv[2], sys.argv[3], [a.split(":=", 1) for a in sys.argv[4:]]
if mode == "describe":
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    ld = get_launch_description_from_python_launch_file(path)
    print(json.dumps([[a.name, a.description, a.default_value is not None] for a in ld.get_launch_arguments()]))
    sys.exit(0)
ls = launch.LaunchService(argv=sys.argv[4:])
ls.include_launch_description(launch.LaunchDescription([
    IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=[tuple(a) for a in args])
]))
sys.exit(ls.run())
"""


def _thirdparty_reason() -> str | None:
    if not (THIRDPARTY / "launch" / "__init__.py").is_file():
        return f"upstream launch/launch_ros not found in {THIRDPARTY} (see its README; set PANOPTIC_THIRDPARTY)"
    return None  # osrf-pycommon (launch needs it) comes from scripts/requirements.txt: not a skip


needs_launch = pytest.mark.skipif(
    _thirdparty_reason() is not None, reason=str(_thirdparty_reason())
)
LAUNCH_FILES = {"panoptic.launch.py": [""], "multi_camera.launch.py": ["front", "rear"]}


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> str:
    """AMENT_PREFIX_PATH with an ament prefix for this checkout first (scripts/ament_prefix.py)."""
    spec = importlib.util.spec_from_file_location(
        "ament_prefix", ROOT / "scripts" / "ament_prefix.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    exe_dir = Path(sys.executable).parent
    if not (exe_dir / "panoptic_node").exists():
        pytest.skip(f"{exe_dir / 'panoptic_node'} not installed (pip install -e .)")
    pre = tmp_path_factory.mktemp("ament_prefix")
    mod.make_prefix(pre, exe_dir, ROOT)
    assert mod.make_prefix(pre, exe_dir, ROOT) == []  # idempotent, as scripts/setup relies on
    rest = os.environ.get("AMENT_PREFIX_PATH", "")
    return os.pathsep.join([str(pre)] + ([rest] if rest else []))


def launcher_env(prefix: str, **extra: str) -> dict[str, str]:
    return child_env(AMENT_PREFIX_PATH=prefix, **extra)


def describe(path: Path, prefix: str) -> list:
    r = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(THIRDPARTY), "describe", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=launcher_env(prefix),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


class Launch(OutputProcess):
    """``ros2 launch FILE ARGS`` in its own process group; output collected by a thread."""

    def __init__(self, path: Path, prefix: str, args: dict[str, str], env: dict | None = None):
        cmd = [sys.executable, "-c", LAUNCHER, str(THIRDPARTY), "run", str(path)]
        cmd += [f"{k}:={v}" for k, v in args.items()]
        super().__init__(cmd, env=env or launcher_env(prefix), start_new_session=True)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)  # the whole group: launch and the node it started

    def node_pid(self) -> int | None:
        m = re.search(r"\[panoptic_node-\d+\]: process started with pid \[(\d+)\]", self.output)
        return int(m[1]) if m else None

    def ctrl_c(self, timeout: float = 60.0) -> int:
        """SIGINT to the process group, as a terminal's Ctrl-C; the exit status of launch."""
        return self.end(signal.SIGINT, timeout)


@needs_launch
@pytest.mark.parametrize("name", sorted(LAUNCH_FILES))
def test_launch_arguments_are_documented(name, prefix):
    args = {
        a: (desc, has_default) for a, desc, has_default in describe(ROOT / "launch" / name, prefix)
    }
    assert {"params_file", "backend", "precision", "namespace", "dds_profile"} <= set(args), args
    for a, (desc, has_default) in args.items():
        assert len(desc) > 10 and has_default, (
            f"{name}: argument {a} undocumented or without default"
        )
    assert "dds_profile:=none" in args["dds_profile"][0]


def test_launch_env_follows_the_dds_profile_argument(tmp_path):
    shipped = str(dds_profile.shipped_profile())
    env = dds_profile.launch_env(shipped, {})
    assert list(env.values()) == [shipped] and len(env) == 1
    assert dds_profile.launch_env("none", {}) == {} and dds_profile.launch_env("NONE", {}) == {}
    mine = {dds_profile.FASTRTPS_VAR: "/my/profile.xml"}
    assert dds_profile.launch_env(shipped, mine) == {}  # the user's profile is inherited
    with pytest.raises(FileNotFoundError):
        dds_profile.launch_env(str(tmp_path / "missing.xml"), {})


def test_every_parameter_file_sets_only_declared_parameters():
    files = [p for p in (ROOT / "config").glob("*.yaml") if "ros__parameters" in p.read_text()]
    assert ROOT / "config" / "panoptic.yaml" in files
    for f in files:
        data = yaml.safe_load(f.read_text())
        for key, block in data.items():
            values = block["ros__parameters"]
            unknown = set(values) - set(params.SCHEMA)
            assert not unknown, f"{f.name} [{key}] sets undeclared parameters {unknown}"
            assert params.validate_all(values) == [], f.name


def test_rviz_config_shows_node_outputs():
    leaves = set(OUTPUTS) | {"panoptic_rgb", "label_info"}
    rviz = yaml.safe_load((ROOT / "config" / "panoptic.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = [d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"]
    assert len(topics) >= 3
    for t in topics:
        assert t.rsplit("/", 1)[-1] in leaves, t
    assert {"overlay", "semantic"} <= {t.rsplit("/", 1)[-1] for t in topics}


def test_setup_installs_launch_and_config():
    text = (ROOT / "setup.py").read_text()
    assert re.search(r'glob\("launch/\*\.py"\)', text) and re.search(
        r'glob\("config/\*\.rviz"\)', text
    )
    assert re.search(r'glob\("config/\*\.xml"\)', text)  # the Fast DDS profile


# ---- the node reads a parameter file as launch_ros writes it --------------------------------
@pytest.mark.ros
def test_node_accepts_a_params_file_as_launch_ros_writes_it(tmp_path):
    """launch_ros's Node action dumps dict parameters with yaml.dump, lists as !!python/tuple
    (launch_ros/actions/node.py, _create_params_file_from_dict); rcl reads that file."""
    rclpy = pytest.importorskip("rclpy")
    from rcl_interfaces.srv import GetParameters
    from ros_helpers import EXE, NodeProcess, RosTester, from_pvalue

    if not EXE.exists():
        pytest.skip(f"{EXE} not installed")
    path = tmp_path / "launch_params_x"
    with open(path, "w") as h:  # the exact launch_ros code path
        yaml.dump(
            {"/**": {"ros__parameters": {"cameras": ("front", "rear"), "autostart": False}}},
            h,
            default_flow_style=False,
        )
    assert "!!python/tuple" in path.read_text()
    assert params.read_params_file(path)["cameras"] == ["front", "rear"]  # process_bag reads it too
    ns = f"/{TAG}_pf"
    node = NodeProcess(ns, "--params-file", str(path))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    tester = RosTester(ctx, f"{TAG}_pf_tester")
    try:
        req = GetParameters.Request(names=["cameras", "autostart"])
        res = tester.call(GetParameters, f"{ns}/panoptic_node/get_parameters", req, timeout=90)
        assert [from_pvalue(v) for v in res.values] == [["front", "rear"], False], node.output
    finally:
        tester.close()
        rc = node.stop()
        rclpy.try_shutdown(context=ctx)
    assert rc == 0 and "Traceback" not in node.output, node.output


# ---- real launches ----------------------------------------------------------------------------
def _frame(stamp_s: int, h: int = 240, w: int = 320):
    from sensor_msgs.msg import Image

    msg = Image(height=h, width=w, encoding="bgr8", step=w * 3)
    msg.data = np.random.default_rng(stamp_s).integers(0, 256, h * w * 3, np.uint8).tobytes()
    msg.header.stamp.sec = stamp_s
    msg.header.frame_id = "cam"
    return msg


@pytest.fixture(scope="module")
def ros(prefix):
    if _thirdparty_reason():
        pytest.skip(_thirdparty_reason())
    if importlib.util.find_spec("vision_msgs") is None:
        pytest.skip("vision_msgs not built (scripts/setup)")
    rclpy = pytest.importorskip("rclpy")
    from ros_helpers import RosTester

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    tester = RosTester(ctx, f"{TAG}_tester")
    yield tester
    tester.close()
    rclpy.try_shutdown(context=ctx)


def _wait(pred, timeout: float, what: str, launch: Launch) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert launch.proc.poll() is None, f"launch exited ({what}):\n{launch.output[-4000:]}"
        assert time.monotonic() < deadline, (
            f"timed out after {timeout}s: {what}\n{launch.output[-4000:]}"
        )
        time.sleep(0.05)


def _run_launch(
    tester, name: str, prefix: str, extra_args: dict | None = None, env: dict | None = None
):
    """Launch ``name``, drive every camera, return (answered per camera and output, reported
    parameters, launch exit status, launch output, node environment or None)."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.qos import ReliabilityPolicy
    from ros_helpers import from_pvalue, stamp_ns
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    cams = LAUNCH_FILES[name]
    ns = f"/{TAG}_{name.split('.')[0]}"
    inputs = {c: f"{ns}_in/{c or 'camera'}/image_raw" for c in cams}
    args = {"namespace": ns.lstrip("/"), "backend": "onnxruntime"}
    args.update({"image": inputs[""]} if cams == [""] else {c: inputs[c] for c in cams})
    args.update(extra_args or {})
    pubs = {
        c: tester.node.create_publisher(Image, inputs[c], 10) for c in cams
    }  # a driver's default QoS
    boxes = {
        (c, o): tester.collect(
            Detection2DArray if o == "detections" else Image, f"{ns}/{c + '/' if c else ''}{o}"
        )
        for c in cams
        for o in OUTPUTS
    }
    launch = Launch(ROOT / "launch" / name, prefix, args, env)
    node_env = None
    try:
        for c in cams:  # input_qos auto: the node subscribes reliably to these reliable publishers

            def reliable(c=c):
                subs = tester.node.get_subscriptions_info_by_topic(inputs[c])
                return (
                    subs
                    and all(s.qos_profile.reliability == ReliabilityPolicy.RELIABLE for s in subs)
                    and pubs[c].get_subscription_count() == len(subs)
                )

            _wait(reliable, 120, f"a reliable subscription on {inputs[c]}", launch)
        probe = 1
        while not all(boxes.values()):  # probe frames until every output of every camera answered
            assert launch.proc.poll() is None, f"launch exited:\n{launch.output[-4000:]}"
            for c in cams:
                pubs[c].publish(_frame(probe))
            probe += 1
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and not all(boxes.values()):
                time.sleep(0.02)
            assert probe < 400, (
                f"no outputs: {[k for k, v in boxes.items() if not v]}\n{launch.output[-4000:]}"
            )
        base = 1000
        t0 = time.monotonic()
        for i in range(FRAMES):
            for c in cams:
                pubs[c].publish(_frame(base + i))
            time.sleep(max(0.0, t0 + (i + 1) / HZ - time.monotonic()))
        want = {(base + i) * 10**9 for i in range(FRAMES)}

        def answered():
            return {k: len(want & {stamp_ns(m) for m in list(b)}) for k, b in boxes.items()}

        last, quiet = None, time.monotonic()
        while min(answered().values()) < FRAMES and time.monotonic() - quiet < 15:
            now = answered()
            if now != last:
                last, quiet = now, time.monotonic()
            time.sleep(0.1)
        got = answered()
        names = ["cameras", "backend", "input_qos", "model", "publish_overlay", "precision"]
        res = tester.call(
            GetParameters,
            f"{ns}/panoptic_node/get_parameters",
            GetParameters.Request(names=names),
            timeout=30,
        )
        reported = {n: from_pvalue(v) for n, v in zip(names, res.values)}
        pid = launch.node_pid()
        if pid and Path(f"/proc/{pid}/environ").exists():
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            node_env = dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)
    finally:
        rc = launch.ctrl_c()
        for p in pubs.values():
            tester.node.destroy_publisher(p)
    return got, reported, rc, launch.output, node_env


@needs_launch
@pytest.mark.ros
def test_single_camera_launch(ros, prefix):
    got, reported, rc, out, node_env = _run_launch(ros, "panoptic.launch.py", prefix)
    per_cam = min(got.values())
    print(
        f"\npanoptic.launch.py: answered {per_cam}/{FRAMES} on every output ({got}); Ctrl-C: exit {rc}"
    )
    print("log tail:\n" + "\n".join(out.splitlines()[-6:]))
    assert per_cam >= FRAMES - 1, (got, out[-4000:])
    assert reported == {
        "cameras": [""],
        "backend": "onnxruntime",
        "input_qos": "auto",
        "model": "default",
        "publish_overlay": True,
        "precision": "fp32",  # no precision:=...: the params file's value
    }
    assert rc == 0 and "Traceback" not in out and "terminate called" not in out, out[-4000:]
    assert re.search(r"\[panoptic_node-\d+\]: process has finished cleanly", out), out[-4000:]
    if (
        node_env is not None
    ):  # the default dds_profile: the shipped profile, by dds_profile's variable
        want = dds_profile.launch_env(str(ROOT / "config" / "fastdds_large_frames.xml"), {})
        assert all(node_env.get(k) == v for k, v in want.items()), node_env


@needs_launch
@pytest.mark.ros
def test_multi_camera_launch_without_a_profile(ros, prefix):
    env = launcher_env(prefix)
    env.pop(dds_profile.FASTDDS_VAR, None)
    env.pop(dds_profile.FASTRTPS_VAR, None)
    got, reported, rc, out, node_env = _run_launch(
        ros, "multi_camera.launch.py", prefix, {"dds_profile": "none", "precision": "int8"}, env
    )
    for cam in LAUNCH_FILES["multi_camera.launch.py"]:
        n = min(v for (c, _), v in got.items() if c == cam)
        print(f"\nmulti_camera.launch.py camera {cam}: answered {n}/{FRAMES} on every output")
        assert n >= FRAMES - 1, (got, out[-4000:])
    print(f"Ctrl-C: exit {rc}; log tail:\n" + "\n".join(out.splitlines()[-6:]))
    assert reported["cameras"] == ["front", "rear"]  # launch_ros wrote it as !!python/tuple
    assert reported["backend"] == "onnxruntime" and reported["input_qos"] == "auto"
    assert reported["precision"] == "int8"  # the launch argument reached the node (was ignored)
    assert rc == 0 and "Traceback" not in out and "terminate called" not in out, out[-4000:]
    assert re.search(r"\[panoptic_node-\d+\]: process has finished cleanly", out), out[-4000:]
    if node_env is not None:  # dds_profile:=none: no profile variable for the node
        assert dds_profile.FASTDDS_VAR not in node_env and dds_profile.FASTRTPS_VAR not in node_env


@needs_launch
@pytest.mark.ros
@pytest.mark.parametrize("name", sorted(LAUNCH_FILES))
def test_ctrl_c_with_frames_in_flight(name, prefix):
    """Ctrl-C while every camera still streams best-effort VGA frames at 30 Hz (a driver that is
    not stopped first): the terminal's SIGINT and launch's forwarded one land while the worker is
    mid-inference and the executor is taking frames. Launch and node end cleanly: exit 0,
    "process has finished cleanly", no traceback, no ``terminate called`` (issue 13)."""
    from test_node_signals import PUBLISHER, _env

    cams = LAUNCH_FILES[name]
    ns = f"{TAG}_flood_{name.split('.')[0]}"
    inputs = {c: f"/{ns}_in/{c or 'camera'}/image_raw" for c in cams}
    args = {"namespace": ns, "backend": "onnxruntime"}
    args.update({"image": inputs[""]} if cams == [""] else {c: inputs[c] for c in cams})
    pubs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, t],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for t in inputs.values()
    ]
    launch = Launch(ROOT / "launch" / name, prefix, args)
    try:
        _wait(
            lambda: all(f"camera '{c}'" in launch.output for c in cams),
            120,
            "every camera subscribed",
            launch,
        )
        time.sleep(1.5)  # frames in flight
    finally:
        rc = launch.ctrl_c()
        for p in pubs:
            p.send_signal(signal.SIGINT)
        for p in pubs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    out = launch.output
    assert rc == 0 and "Traceback" not in out and "terminate called" not in out, out[-4000:]
    assert re.search(r"\[panoptic_node-\d+\]: process has finished cleanly", out), out[-4000:]
