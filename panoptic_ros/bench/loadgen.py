"""Overload / soak harness for the real node (ROS shell: imports rclpy lazily).

Pieces, each usable on its own:

* ``PublisherProcess`` / ``python -m panoptic_ros.bench.loadgen publish ...``: a separate process
  that publishes pre-rendered synthetic frames on one or more image topics at a fixed
  rate (absolute schedule: a late tick is skipped, never burst), stamping each frame with
  the wall clock, and writes the stamps it published to a JSON file at exit.
* ``Recorder``: an rclpy node in the harness process that subscribes to one output of
  every camera and to ``/diagnostics``; latency = receive time - header stamp (the node
  copies the input header to every output, so this is camera-to-output latency).
* ``ProcessSampler``: RSS, thread count and CPU of the node process over time (psutil).
* ``NodeProcess``: starts ``panoptic_node`` the way launch_ros does (installed executable,
  ``--ros-args``), stops it with SIGINT and checks it exits 0.
* ``Recorder.get_state`` / ``Recorder.change_state`` and ``cycle_lifecycle``: drive
  ``/<ns>/<node>/get_state|change_state`` (lifecycle_msgs/srv).
* ``run_overload`` (with ``run_load_phase`` and ``cycle_lifecycle``; cli/bench.py ``run_soak_mode``): the experiments
  ``panoptic-ros bench --overload|--soak`` run; they return plain dicts that the command prints.
* ``python -m panoptic_ros.bench.loadgen sink ...``: a subscriber that discards (``sink_main``).

Clocks: publisher and recorder run on the same host and both use ``time.time_ns()``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from panoptic_ros.bench.timing import Stats, format_table, growth_pct, summarize, windowed
from panoptic_ros.core.package_files import config_file

REPO_DIR = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ros_env(base: dict | None = None) -> dict:
    """Environment for DDS subprocesses: keep discovery on this host; honour PANOPTIC_TEST_DOMAIN_ID."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if "ROS_DOMAIN_ID" not in env and "PANOPTIC_TEST_DOMAIN_ID" in env:
        env["ROS_DOMAIN_ID"] = env["PANOPTIC_TEST_DOMAIN_ID"]
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def use_large_shm(size_mb: int = 16) -> Path:
    """Fast DDS's default shared-memory segment (512 KiB) cannot hold a 640x480 rgb8 frame, so such
    frames go over UDP fragments and best-effort readers lose most of them. Points the profiles-file
    variable of the Fast DDS in use (dds_profile.profile_env; this process and every child) at a
    profile with a ``size_mb`` segment: the shipped config/fastdds_large_frames.xml for 16 MiB, else
    a copy of it with the size changed (dds_profile.large_shm_profile). ``bench --large-shm`` asks
    for it, so it overrides any profile set before."""
    from panoptic_ros.ros import dds_profile

    path = dds_profile.large_shm_profile(size_mb)
    for var in (dds_profile.FASTDDS_VAR, dds_profile.FASTRTPS_VAR):
        os.environ.pop(var, None)
    os.environ.update(dds_profile.profile_env(path))
    return path


def apply_ros_env() -> None:
    """Same settings for this process (call before rclpy.init)."""
    os.environ.update(ros_env())


# ---------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------
def synthetic_frames(
    height: int, width: int, count: int = 4, seed0: int = 424242
) -> list[np.ndarray]:
    """``count`` distinct RGB frames (synthetic scenes when available, else noise)."""
    try:
        from panoptic_ros.core.synthetic import generate_scene

        return [generate_scene(seed0 + i, height, width).image for i in range(count)]
    except Exception:  # pragma: no cover - synthetic.py is optional for the harness
        rng = np.random.default_rng(seed0)
        return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def make_image_msg(rgb: np.ndarray, encoding: str = "bgr8", frame_id: str = "camera"):
    """sensor_msgs/Image holding ``rgb`` converted to ``encoding`` (header stamp left at 0)."""
    from std_msgs.msg import Header

    from panoptic_ros.core.encodings import from_rgb
    from panoptic_ros.ros.conversions import array_to_image_msg

    return array_to_image_msg(from_rgb(rgb, encoding), encoding, Header(frame_id=frame_id))


def set_stamp(msg, t_ns: int) -> None:
    from panoptic_ros.ros.conversions import ns_to_stamp

    msg.header.stamp = ns_to_stamp(t_ns)


# ---------------------------------------------------------------------------------------
# publisher process
# ---------------------------------------------------------------------------------------
def publish_main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``python -m panoptic_ros.bench.loadgen publish``; see module docstring."""
    p = argparse.ArgumentParser(prog="panoptic_ros.bench.loadgen publish")
    p.add_argument(
        "--topic", action="append", required=True, help="image topic (repeat for several cameras)"
    )
    p.add_argument("--rate", type=float, required=True, help="frames per second per topic")
    p.add_argument("--duration", type=float, required=True, help="seconds of publishing")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--encoding", default="bgr8")
    p.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data")
    p.add_argument(
        "--wait-subscribers",
        type=float,
        default=60.0,
        help="seconds to wait for the node to subscribe",
    )
    p.add_argument("--out", required=True, help="JSON file for the published stamps")
    a = p.parse_args(argv)

    apply_ros_env()
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f"panoptic_loadgen_{os.getpid()}")
    qos = (
        qos_profile_sensor_data
        if a.qos == "sensor_data"
        else QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
        )
    )
    pubs = [node.create_publisher(Image, t, qos) for t in a.topic]
    frames = synthetic_frames(a.height, a.width, 4)
    msgs = [
        [make_image_msg(f, a.encoding, frame_id=f"cam{i}") for f in frames]
        for i in range(len(pubs))
    ]
    stamps: dict[str, list[int]] = {t: [] for t in a.topic}
    result = {
        "topics": a.topic,
        "rate": a.rate,
        "ready": False,
        "stamps": stamps,
        "skipped_ticks": 0,
    }

    deadline = time.monotonic() + a.wait_subscribers
    while time.monotonic() < deadline and not all(pb.get_subscription_count() > 0 for pb in pubs):
        time.sleep(0.05)
    result["ready"] = all(pb.get_subscription_count() > 0 for pb in pubs)
    print(f"publisher ready={result['ready']} topics={a.topic}", file=sys.stderr, flush=True)

    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("flag", True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    period = 1.0 / a.rate
    t_start = time.monotonic()
    t_next = t_start
    k = 0
    while not stop["flag"] and time.monotonic() - t_start < a.duration:
        now = time.monotonic()
        if now < t_next:
            time.sleep(t_next - now)
        for i, pb in enumerate(pubs):
            m = msgs[i][k % len(frames)]
            t_ns = time.time_ns()
            set_stamp(m, t_ns)
            pb.publish(m)
            stamps[a.topic[i]].append(t_ns)
        k += 1
        t_next += period
        behind = time.monotonic() - t_next
        if behind > period:  # late: skip ticks rather than burst
            n = int(behind // period)
            result["skipped_ticks"] += n
            t_next += n * period
    result["elapsed_s"] = time.monotonic() - t_start
    result["achieved_rate"] = k / max(result["elapsed_s"], 1e-9)
    Path(a.out).write_text(json.dumps(result))
    node.destroy_node()
    rclpy.shutdown()
    return 0


class PublisherProcess:
    """``publish_main`` in a subprocess (its own GIL, like a real camera driver)."""

    def __init__(
        self,
        topics: Sequence[str],
        rate: float,
        duration: float,
        *,
        height: int,
        width: int,
        encoding: str = "bgr8",
        qos: str = "sensor_data",
    ) -> None:
        self._dir = tempfile.mkdtemp(prefix="panoptic_loadgen_")
        self.out = Path(self._dir) / "stamps.json"
        cmd = [
            sys.executable,
            "-m",
            "panoptic_ros.bench.loadgen",
            "publish",
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--height",
            str(height),
            "--width",
            str(width),
            "--encoding",
            encoding,
            "--qos",
            qos,
            "--out",
            str(self.out),
        ]
        for t in topics:
            cmd += ["--topic", t]
        env = ros_env()
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_DIR)] + [p for p in [env.get("PYTHONPATH")] if p]
        )
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)

    def wait(self, timeout: float) -> dict:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=10)
        try:
            return json.loads(self.out.read_text())
        except (OSError, ValueError):
            return {"stamps": {}, "ready": False}
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)


# ---------------------------------------------------------------------------------------
# node process + sampler
# ---------------------------------------------------------------------------------------
def node_command() -> list[str]:
    exe = Path(sys.executable).parent / "panoptic_node"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("panoptic_node")
    if found:
        return [found]
    return [
        sys.executable,
        "-c",
        "import sys; from panoptic_ros.ros.node import main; sys.exit(main())",
    ]


def default_params_file() -> Path | None:
    try:
        return config_file("panoptic.yaml")
    except FileNotFoundError:
        return None


class NodeProcess:
    """The real node in a subprocess, started like launch_ros starts it."""

    def __init__(
        self,
        namespace: str,
        node_name: str,
        cameras: Sequence[str],
        params: dict[str, str],
        log_path: Path | None = None,
    ) -> None:
        self.namespace = "/" + namespace.strip("/")
        self.node_name = node_name
        self.cameras = list(cameras)
        cmd = node_command() + [
            "--ros-args",
            "-r",
            f"__ns:={self.namespace}",
            "-r",
            f"__node:={node_name}",
        ]
        pf = default_params_file()
        if pf is not None:
            cmd += ["--params-file", str(pf)]
        if self.cameras != [""]:
            cmd += ["-p", "cameras:=[" + ",".join(f"'{c}'" for c in self.cameras) + "]"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        self.cmd = cmd
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=ros_env(), stdout=self._log, stderr=self._log)
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def topic(self, camera: str, name: str) -> str:
        base = self.namespace.rstrip("/")
        return f"{base}/{camera}/{name}" if camera else f"{base}/{name}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"node pid {self.pid} did not exit {timeout:.0f} s after SIGINT; killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.returncode


@dataclass
class ProcSample:
    t: float  # monotonic seconds
    rss_mb: float
    threads: int
    cpu_pct: float


class ProcessSampler:
    """Samples RSS, threads and CPU% of one process every ``period`` seconds in a thread."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self._proc.cpu_percent(None)
        self.period = period
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self._thread.start()

    def sample_now(self) -> ProcSample | None:
        try:
            with self._proc.oneshot():
                s = ProcSample(
                    time.monotonic(),
                    self._proc.memory_info().rss / 2**20,
                    self._proc.num_threads(),
                    self._proc.cpu_percent(None),
                )
        except Exception:
            return None
        self.samples.append(s)
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample_now()

    def between(self, t0: float, t1: float) -> list[ProcSample]:
        return [s for s in list(self.samples) if t0 <= s.t <= t1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------------------------------
# recorder (subscriptions + lifecycle client) in this process
# ---------------------------------------------------------------------------------------
@dataclass
class Arrival:
    t: float  # monotonic receive time
    camera: str
    latency_ms: float
    stamp_ns: int


@dataclass
class DiagSnapshot:
    t: float
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # status name -> key -> value


def _diag_number(text: str) -> float | None:
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def diag_drop_total(values: dict[str, dict[str, str]], key: str = "drop") -> float:
    """Sum of every numeric diagnostics value whose key contains ``key`` (one status per camera)."""
    total = 0.0
    for kv in values.values():
        for k, v in kv.items():
            if key in k.lower():
                x = _diag_number(v)
                if x is not None and math.isfinite(x):
                    total += x
    return total


class Recorder:
    """rclpy node spun in a background thread: output arrivals, /diagnostics, lifecycle calls."""

    def __init__(self, name: str = "panoptic_bench_recorder") -> None:
        apply_ros_env()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self._own_init = not rclpy.ok()
        if self._own_init:
            rclpy.init()
        self.node = rclpy.create_node(f"{name}_{os.getpid()}")
        self.arrivals: list[Arrival] = []
        self.diags: list[DiagSnapshot] = []
        self._lock = threading.Lock()
        self._subs: list = []
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="recorder-spin", daemon=True)
        self._running = True
        self._thread.start()
        from diagnostic_msgs.msg import DiagnosticArray

        self._subs.append(
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        )

    def _spin(self) -> None:
        while self._running and self._rclpy.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except Exception:  # shutting down
                if not self._running:
                    break

    # -- outputs ---------------------------------------------------------------------
    def _qos_for(self, topic: str):
        """Match the reliability of the publisher already on ``topic`` (else best effort)."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        rel = ReliabilityPolicy.BEST_EFFORT
        try:
            infos = self.node.get_publishers_info_by_topic(topic)
            if infos and all(
                i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos
            ):
                rel = ReliabilityPolicy.RELIABLE
        except Exception:
            pass
        return QoSProfile(
            depth=10,
            reliability=rel,
            history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.VOLATILE,
        )

    def watch(self, topic: str, camera: str, msg_type=None) -> None:
        if msg_type is None:
            from sensor_msgs.msg import Image as msg_type  # noqa: N813
        qos = self._qos_for(topic)

        from panoptic_ros.ros.conversions import stamp_to_ns

        def cb(msg, camera=camera):
            now_ns = time.time_ns()
            t = time.monotonic()
            s = stamp_to_ns(msg.header.stamp)
            with self._lock:
                self.arrivals.append(Arrival(t, camera, (now_ns - s) / 1e6, s))

        self._subs.append(self.node.create_subscription(msg_type, topic, cb, qos))

    def wait_for_publishers(
        self, topics: Sequence[str], timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if all(self.node.count_publishers(t) > 0 for t in topics):
                return True
            time.sleep(0.1)
        return all(self.node.count_publishers(t) > 0 for t in topics)

    def _on_diag(self, msg) -> None:
        snap = DiagSnapshot(time.monotonic())
        for st in msg.status:
            snap.values[st.name] = {kv.key: kv.value for kv in st.values}
        with self._lock:
            self.diags.append(snap)

    def arrivals_between(self, t0: float, t1: float) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if t0 <= a.t <= t1]

    def diag_values(self, t0: float, t1: float, prefix: str = "") -> dict[str, dict[str, str]]:
        """Latest values per status name seen in [t0, t1] (names filtered by substring ``prefix``)."""
        out: dict[str, dict[str, str]] = {}
        with self._lock:
            for d in self.diags:
                if t0 <= d.t <= t1:
                    for name, kv in d.values.items():
                        if prefix in name:
                            out[name] = kv
        return out

    # -- lifecycle -------------------------------------------------------------------
    def get_state(self, node_fqn: str, timeout: float = 10.0) -> str | None:
        from lifecycle_msgs.srv import GetState

        cli = self.node.create_client(GetState, f"{node_fqn}/get_state")
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                return None
            fut = cli.call_async(GetState.Request())
            if not _wait_future(fut, timeout):
                return None
            return fut.result().current_state.label
        finally:
            self.node.destroy_client(cli)

    def change_state(self, node_fqn: str, transition_id: int, timeout: float = 30.0) -> bool:
        from lifecycle_msgs.srv import ChangeState

        cli = self._change_clients.get(node_fqn) if hasattr(self, "_change_clients") else None
        if cli is None:
            self._change_clients = getattr(self, "_change_clients", {})
            cli = self.node.create_client(ChangeState, f"{node_fqn}/change_state")
            self._change_clients[node_fqn] = cli
        if not cli.wait_for_service(timeout_sec=timeout):
            return False
        req = ChangeState.Request()
        req.transition.id = int(transition_id)
        fut = cli.call_async(req)
        if not _wait_future(fut, timeout):
            return False
        return bool(fut.result().success)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        try:
            self._executor.remove_node(self.node)
            self.node.destroy_node()
        finally:
            if self._own_init and self._rclpy.ok():
                self._rclpy.shutdown()


def _wait_future(fut, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    return fut.done() and fut.exception() is None


# lifecycle_msgs/msg/Transition ids (kept here so the numbers are visible without ROS)
TRANSITION_CONFIGURE, TRANSITION_CLEANUP, TRANSITION_ACTIVATE, TRANSITION_DEACTIVATE = 1, 2, 3, 4


# ---------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    """One load phase: per-window latency, rates, drops, process samples."""

    cameras: list[str]
    rate_per_camera: float
    duration_s: float
    published: int
    received: int
    missing_stamps: int
    diag_drops: float
    achieved_publish_rate: float
    output_rate: float
    latency: Stats
    windows: list[tuple[float, Stats]]
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    threads_start: int
    threads_end: int
    node_exit: int | None = None
    diag_values: dict = field(default_factory=dict)
    diag_counts: dict = field(
        default_factory=dict
    )  # per phase: frames_received/processed/dropped/bad

    @property
    def rss_growth_pct(self) -> float:
        return growth_pct(self.rss_warm_mb, self.rss_end_mb)


def run_load_phase(
    rec: Recorder,
    sampler: ProcessSampler,
    node: NodeProcess,
    *,
    rate: float,
    duration: float,
    height: int,
    width: int,
    encoding: str,
    window_s: float,
    warmup_s: float,
    watch: str = "semantic",
) -> PhaseResult:
    """Publish at ``rate`` per camera for ``duration`` s against a running node and measure."""
    in_topics = [node.topic(c, "image") for c in node.cameras]
    s0 = sampler.sample_now()
    pub = PublisherProcess(in_topics, rate, duration, height=height, width=width, encoding=encoding)
    # the publisher waits for subscribers itself; our clock for the phase starts now
    t_begin = time.monotonic()
    stats = pub.wait(timeout=duration + 90)
    t_end = time.monotonic()
    time.sleep(min(2.0, 0.5 + 3 * 1.0 / max(rate, 1e-3)))  # let in-flight frames arrive
    s_end = sampler.sample_now()
    arr = rec.arrivals_between(t_begin, time.monotonic())
    cam_of_topic = {node.topic(c, "image"): c for c in node.cameras}
    published_stamps: dict[str, set[int]] = {
        cam_of_topic.get(t, t): set(v) for t, v in stats.get("stamps", {}).items()
    }
    published = sum(len(v) for v in published_stamps.values())
    received_by_cam: dict[str, set[int]] = {}
    for a in arr:
        received_by_cam.setdefault(a.camera, set()).add(a.stamp_ns)
    received = sum(
        len(received_by_cam.get(c, set()) & published_stamps.get(c, set()))
        for c in published_stamps
    )
    # phase window: publishing started when the publisher saw the node; use first arrival as origin
    t_first = min((a.t for a in arr), default=t_begin)
    span = max(1e-9, (max((a.t for a in arr), default=t_end) - t_first))
    steady = [a for a in arr if a.t >= t_first + warmup_s]
    windows = windowed(
        [a.t - t_first for a in arr],
        [a.latency_ms for a in arr],
        window_s,
        start_s=0.0,
        end_s=max(span, window_s),
    )
    procs = sampler.between(t_begin, time.monotonic())
    warm = [p for p in procs if p.t >= t_first + warmup_s] or procs
    # node counters are cumulative since configure: count this phase as end - start
    diag_before = rec.diag_values(0.0, t_begin, prefix=node.namespace)
    diag = rec.diag_values(t_begin, time.monotonic(), prefix=node.namespace)
    cpu = [q.cpu_pct for q in sampler.between(t_first + warmup_s, t_end)]

    def delta(key: str) -> float:
        if not diag:
            return math.nan
        end, start = (
            diag_drop_total(diag, key),
            diag_drop_total(diag_before, key) if diag_before else 0.0,
        )
        return end - start if end >= start else end

    diag_counts = {
        k: delta(k) for k in ("frames_received", "frames_processed", "frames_dropped", "frames_bad")
    }
    diag_counts["node_cpu_pct"] = (sum(cpu) / len(cpu)) if cpu else math.nan
    # the node's own view (receive -> published, windowed mean/p99), latest value per camera, averaged
    for key in ("latency_mean_ms", "latency_p99_ms", "infer_mean_ms", "rate_hz"):
        vals = [_diag_number(kv.get(key, "")) for kv in diag.values()]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        diag_counts[key] = (sum(vals) / len(vals)) if vals else math.nan
    return PhaseResult(
        cameras=list(node.cameras),
        rate_per_camera=rate,
        duration_s=duration,
        published=published,
        received=received,
        missing_stamps=published - received,
        diag_drops=delta("drop"),
        achieved_publish_rate=float(stats.get("achieved_rate", math.nan)),
        output_rate=len(arr) / span if arr else 0.0,
        latency=summarize([a.latency_ms for a in steady]),
        windows=windows,
        rss_start_mb=(s0.rss_mb if s0 else math.nan),
        rss_warm_mb=(warm[0].rss_mb if warm else math.nan),
        rss_end_mb=(s_end.rss_mb if s_end else math.nan),
        threads_start=(warm[0].threads if warm else -1),
        threads_end=(s_end.threads if s_end else -1),
        diag_values=diag,
        diag_counts=diag_counts,
    )


def start_node(
    rec: Recorder,
    cameras: Sequence[str],
    *,
    backend: str,
    extra_params: dict[str, str] | None,
    watch: str,
    startup_timeout: float,
    log_dir: Path,
) -> tuple[NodeProcess, ProcessSampler]:
    ns = f"panoptic_bench_{os.getpid()}_{len(cameras)}cam"
    params = {"backend": backend, "publish_overlay": "false"}
    params.update(extra_params or {})
    node = NodeProcess(ns, "panoptic", cameras, params, log_path=log_dir / f"{ns}.log")
    log(f"started node pid {node.pid}: {' '.join(node.cmd)}")
    outs = [node.topic(c, watch) for c in node.cameras]
    if not rec.wait_for_publishers(outs, startup_timeout, alive=node.alive):
        code = node.stop()
        tail = (log_dir / f"{ns}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"node did not offer {outs} within {startup_timeout:.0f} s (exit {code}); log tail:\n{tail}"
        )
    # outputs exist from configure on; frames count only once the node is active
    fqn = f"{node.namespace.rstrip('/')}/{node.node_name}"
    deadline = time.monotonic() + startup_timeout
    state = None
    while time.monotonic() < deadline and node.alive():
        state = rec.get_state(fqn, timeout=5.0)
        if state == "active":
            break
        time.sleep(0.2)
    log(f"node state: {state!r}")
    for c, t in zip(node.cameras, outs):
        rec.watch(t, c)
    time.sleep(0.5)  # let the subscriptions match
    return node, ProcessSampler(node.pid)


def phase_table(p: PhaseResult) -> str:
    rows = [
        (
            f"{t:5.0f}-{t + (p.windows[1][0] - p.windows[0][0] if len(p.windows) > 1 else 0):.0f}s",
            s.n,
            s.p50,
            s.p99,
            s.max,
        )
        for t, s in p.windows
    ]
    return format_table(["window", "frames", "p50 ms", "p99 ms", "max ms"], rows, 1)


def phase_summary(p: PhaseResult) -> str:
    return (
        f"cameras={len(p.cameras)} rate/cam={p.rate_per_camera:.1f} Hz (achieved {p.achieved_publish_rate:.1f}) "
        f"published={p.published} received={p.received} missing={p.missing_stamps} "
        f"node received={p.diag_counts.get('frames_received', math.nan):.0f} "
        f"processed={p.diag_counts.get('frames_processed', math.nan):.0f} dropped={p.diag_drops:.0f} "
        f"output={p.output_rate:.1f} Hz "
        f"(node-side latency mean={p.diag_counts.get('latency_mean_ms', math.nan):.1f} "
        f"p99={p.diag_counts.get('latency_p99_ms', math.nan):.1f} infer={p.diag_counts.get('infer_mean_ms', math.nan):.1f} ms) "  # noqa: E501
        f"latency p50={p.latency.p50:.1f} p99={p.latency.p99:.1f} max={p.latency.max:.1f} ms "
        f"rss {p.rss_start_mb:.0f}->{p.rss_warm_mb:.0f}->{p.rss_end_mb:.0f} MB ({p.rss_growth_pct:+.1f}% after warm-up) "  # noqa: E501
        f"threads {p.threads_start}->{p.threads_end} node CPU {p.diag_counts.get('node_cpu_pct', math.nan):.0f}%"
    )


def cycle_lifecycle(
    rec: Recorder, node: NodeProcess, sampler: ProcessSampler, cycles: int
) -> list[dict]:
    """deactivate, cleanup, configure, activate ``cycles`` times; RSS/threads after each cycle."""
    fqn = f"{node.namespace.rstrip('/')}/{node.node_name}"
    state = rec.get_state(fqn)
    log(f"lifecycle: {fqn} is {state!r}")
    if state is None:
        raise RuntimeError(f"no lifecycle services under {fqn} (is the node a lifecycle node?)")
    out = []
    for i in range(cycles):
        t0 = time.monotonic()
        ok = all(
            rec.change_state(fqn, tr)
            for tr in (
                TRANSITION_DEACTIVATE,
                TRANSITION_CLEANUP,
                TRANSITION_CONFIGURE,
                TRANSITION_ACTIVATE,
            )
        )
        s = sampler.sample_now()
        out.append(
            {
                "cycle": i + 1,
                "ok": ok,
                "seconds": time.monotonic() - t0,
                "rss_mb": s.rss_mb if s else math.nan,
                "threads": s.threads if s else -1,
            }
        )
        log(
            f"  cycle {i + 1:2d}: ok={ok} {out[-1]['seconds']:.2f} s rss={out[-1]['rss_mb']:.0f} MB "
            f"threads={out[-1]['threads']}"
        )
        if not ok:
            break
    return out


def run_overload(
    *,
    camera_sets: Sequence[Sequence[str]],
    rate: float,
    duration: float,
    height: int,
    width: int,
    encoding: str = "bgr8",
    backend: str = "onnxruntime",
    extra_params: dict[str, str] | None = None,
    window_s: float = 10.0,
    warmup_s: float = 5.0,
    watch: str = "semantic",
    startup_timeout: float = 120.0,
    lifecycle_cycles: int = 0,
    after_cycles_s: float = 0.0,
    baseline: tuple[float, float] | None = None,
) -> list[dict]:
    """One node run per camera set: load phase, optional lifecycle cycling + a short load check.

    ``baseline=(rate, seconds)`` first runs a light-load phase whose mean latency is the
    node's single-frame latency (the reference for the overload p99).

    Returns one dict per camera set with the PhaseResult(s) and lifecycle samples.
    """
    rec = Recorder()
    log_dir = Path(tempfile.mkdtemp(prefix="panoptic_bench_logs_"))
    results = []
    try:
        for cams in camera_sets:
            node, sampler = start_node(
                rec,
                cams,
                backend=backend,
                extra_params=extra_params,
                watch=watch,
                startup_timeout=startup_timeout,
                log_dir=log_dir,
            )
            entry: dict = {"cameras": list(cams), "node_cmd": node.cmd}
            try:
                if baseline is not None:
                    log(
                        f"baseline: {len(cams)} camera(s) x {baseline[0]:.1f} Hz for {baseline[1]:.0f} s"
                    )
                    base = run_load_phase(
                        rec,
                        sampler,
                        node,
                        rate=baseline[0],
                        duration=baseline[1],
                        height=height,
                        width=width,
                        encoding=encoding,
                        window_s=window_s,
                        warmup_s=min(2.0, baseline[1] / 4),
                        watch=watch,
                    )
                    log(phase_summary(base))
                    entry["baseline"] = base
                log(
                    f"load: {len(cams)} camera(s) x {rate:.1f} Hz for {duration:.0f} s ({height}x{width} {encoding})"
                )
                phase = run_load_phase(
                    rec,
                    sampler,
                    node,
                    rate=rate,
                    duration=duration,
                    height=height,
                    width=width,
                    encoding=encoding,
                    window_s=window_s,
                    warmup_s=warmup_s,
                    watch=watch,
                )
                log(phase_table(phase))
                log(phase_summary(phase))
                entry["load"] = phase
                if lifecycle_cycles > 0:
                    entry["cycles"] = cycle_lifecycle(rec, node, sampler, lifecycle_cycles)
                    if after_cycles_s > 0:
                        log(f"load after lifecycle cycling: {after_cycles_s:.0f} s")
                        after = run_load_phase(
                            rec,
                            sampler,
                            node,
                            rate=rate,
                            duration=after_cycles_s,
                            height=height,
                            width=width,
                            encoding=encoding,
                            window_s=window_s,
                            warmup_s=min(warmup_s, after_cycles_s / 3),
                            watch=watch,
                        )
                        log(phase_summary(after))
                        entry["after"] = after
                entry["samples"] = list(sampler.samples)
            finally:
                sampler.close()
                entry["node_exit"] = node.stop()
                log(f"node exit code {entry['node_exit']} (log {log_dir})")
            results.append(entry)
    finally:
        rec.close()
    return results


def sink_main(specs: Sequence[str]) -> int:
    """Entry of ``python -m panoptic_ros.bench.loadgen sink [--raw] TOPIC=module:Type ...``: subscribe
    and discard (the subscriber that makes the bench's publish stage real DDS delivery). ``--raw``
    takes each sample serialized (rclpy ``raw=True``): the same DDS delivery without the Python
    message conversion, the cheapest consumer there is (docs/performance.md: it saves ~0.6 of the
    subscriber's ~4.9 ms of CPU per 480x640 frame of four outputs; the rest is DDS receiving).
    Stops on SIGTERM/SIGINT."""
    import importlib

    raw = bool(specs) and specs[0] == "--raw"
    specs = specs[1:] if raw else specs

    apply_ros_env()
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    rclpy.init()
    node = rclpy.create_node(f"panoptic_bench_sink_{os.getpid()}")
    qos = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
    )
    count = {"n": 0}
    subs = []
    for spec in specs:
        topic, _, typ = spec.partition("=")
        mod, _, name = typ.partition(":")
        msg_type = getattr(importlib.import_module(mod), name)
        subs.append(
            node.create_subscription(
                msg_type, topic, lambda _m: count.__setitem__("n", count["n"] + 1), qos, raw=raw
            )
        )
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("flag", True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    while not stop["flag"]:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(f"received={count['n']}", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "publish":
        return publish_main(argv[1:])
    if argv and argv[0] == "sink":
        return sink_main(argv[1:])
    print(
        "usage: python -m panoptic_ros.bench.loadgen publish --topic T --rate HZ --duration S --out FILE",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
