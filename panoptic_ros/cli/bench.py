"""``panoptic-ros bench``: where the time goes, per stage, and how the node behaves under load.

Modes (one run each; ratios are always computed within the run):

* default: one backend, one input size. Per frame: decode (raw ``sensor_msgs/Image`` bytes
  -> RGB through conversions/encodings), preprocess, infer, postprocess (the Segmenter's own
  timings), message build (``result_to_messages``), publish (real rclpy publish to local
  topics with a subscriber process attached; serialization only when DDS is unavailable)
  and end-to-end (wall clock around all of it). Table on stderr; last stdout line
  ``e2e_ms=<float> infer_ms=<float> overhead_ratio=<float>``. Label images go out serialized
  (ros/cdr_image.py), as the node sends them; ``--publish-form both`` also times the Image-message
  path on the same frames and appends ``publish_ratio=<message / serialized>
  overhead_ratio_message=<float>`` (``message`` times only that path). ``--publisher thread``
  moves messages + publish onto a second thread (a model of a node that publishes off its
  worker): e2e is then the frame loop's time per frame and a ``latency`` stage (decode start ->
  publish end) is added. The CPU time per frame of this process and of the subscriber process
  is logged (does a change save work or move it?). DDS runs under the Fast DDS profile the
  node's launch files apply (the shipped one; ``--dds-profile``, ``--large-shm``).
* ``--compare``: the same loop for every backend usable here (onnxruntime and torch on CPU;
  torch-cuda fp16 and tensorrt when a GPU is present).
* ``--sizes 240x320,480x640,...``: the same loop for several input sizes. Per size also old vs
  new preprocess in the same run (``bench/preprocess_ab.py``): ``pre 1call`` is the median ms
  of one cv2.resize per frame, ``pre x`` its ratio to the staged resize's median on the same
  frames (interleaved); likewise the label maps' upsampling (a log line per size); the last
  line adds ``pre_ms_<size>``, ``pre_speedup_<size>`` and ``up_speedup_<size>``.
* ``--precisions fp32,int8``: one Segmenter per precision on ``--backend``, run in turns of
  ``--turn`` frames (interleaved, so a noisy shared machine slows all alike), timing the backend
  call alone (infer) and the whole ``segment`` (preprocess + infer + postprocess) on the same
  synthetic frame. Last stdout line ``infer_ms_<p>=... segment_ms_<p>=...
  infer_speedup_<p>=<first precision's median infer / this one's>``.
* ``--families``: no model, no network: each model family's decode + host post-processing
  (``family.to_result``) for a 480x640 frame on seeded synthetic raw outputs, per case
  (``panoptic_ros.bench.families``). Table on stderr; last stdout line
  ``<family>_ms=<worst case's median> <family>_cpu_ms=<its CPU ms> ... cases=<n>
  over_goal=<cases above 5 ms of CPU time>``.
* ``--tracking``: no model: core.tracking.Tracker alone on 30 moving, occluding objects at
  480x640 (``--height``/``--width``; ``panoptic_ros.bench.tracking``), per tracker variant.
  Last stdout line ``track_ms=<default's median> track_p90_ms=.. track_cpu_ms=.. objects=30``.
  (The default mode times the tracker too, as stage ``track``, on the model's own instances.)
* ``--overload``: starts the real node (``panoptic_node``) and publishes above the rate it
  sustains, on one and then two cameras, reporting output rate, drops, latency per window,
  RSS and threads (see ``panoptic_ros.bench.loadgen``).
* ``--soak``: a long overload, then 20 lifecycle cycles (deactivate, cleanup, configure,
  activate) through ``/<ns>/<node>/change_state``, checking thread and RSS growth.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.backends import PRECISIONS
from panoptic_ros.bench.timing import (
    StageTimer,
    Stats,
    format_kv,
    format_table,
    growth_pct,
    overhead_ratio,
    parse_size,
    parse_sizes,
)
from panoptic_ros.cli.params_option import add_param_argument
from panoptic_ros.ros import dds_profile

HELP = "benchmark stages, backends, input sizes, and the node under overload / soak"

#: stage names in table order
STAGES = (
    "decode",
    "preprocess",
    "infer",
    "postprocess",
    "segment_other",
    "track",
    "messages",
    "publish",
    "e2e",
    "messages_msg",
    "publish_msg",
    "latency",
)


def log(msg: str = "") -> None:
    print(msg, file=sys.stderr, flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="model directory, 'default', or .onnx file")
    p.add_argument(
        "--backend", default="onnxruntime", help="backend for the single / sizes / overload runs"
    )
    p.add_argument(
        "--device", default="", help="backend device ('' = backend default, e.g. cpu, cuda:0)"
    )
    p.add_argument(
        "--threads", type=int, default=0, help="CPU inference threads (0 = runtime default)"
    )
    p.add_argument(
        "--precision",
        default="",
        choices=("", *PRECISIONS),
        help="fp32 | fp16 (GPU backends) | int8 (QDQ graph; onnxruntime, tensorrt); '' = backend default",
    )
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--frames", type=int, default=200, help="timed frames per run")
    p.add_argument("--warmup", type=int, default=20, help="untimed frames before timing")
    p.add_argument(
        "--encoding",
        default="bgr8",
        help="input encoding of the simulated camera (rgb8, bgr8, rgba8, bgra8, mono8)",
    )
    p.add_argument(
        "--publish",
        choices=("auto", "dds", "serialize", "none"),
        default="auto",
        help="publish stage: real DDS publish with a subscriber process (auto/dds), "
        "rclpy serialization only, or skip",
    )
    p.add_argument(
        "--publish-form",
        choices=("serialized", "message", "both"),
        default="serialized",
        help="label images as serialized CDR bytes (what the node publishes), as sensor_msgs/Image "
        "messages (the path before issue 17), or both: the message path is also timed per frame "
        "(stages messages_msg, publish_msg; not part of e2e) for the publish_ratio of one run",
    )
    p.add_argument(
        "--publisher",
        choices=("inline", "thread"),
        default="inline",
        help="where messages + publish run: in the frame loop (inline, as the node does) or on a "
        "publisher thread fed by the loop (thread: a design measured here, not a node option): frames "
        "then go back to back and e2e is the loop's busy time per frame, latency = decode start "
        "to publish end",
    )
    p.add_argument(
        "--sink",
        choices=("message", "raw"),
        default="message",
        help="the subscriber process (--publish dds) takes every output as Python messages "
        "(message) or serialized (raw: the same DDS delivery without the Python message "
        "conversion, the cheapest consumer)",
    )
    p.add_argument(
        "--overlay",
        action="store_true",
        help="also build the overlay image (as when someone subscribes)",
    )
    g = p.add_argument_group("comparisons")
    g.add_argument(
        "--compare", action="store_true", help="compare every backend usable here in one run"
    )
    g.add_argument(
        "--backends",
        default="",
        help="comma list for --compare (default: onnxruntime,torch + GPU ones if present)",
    )
    g.add_argument(
        "--precisions",
        default="",
        help="comma list, e.g. fp32,int8: interleaved inference timing of each on --backend",
    )
    g.add_argument(
        "--turn", type=int, default=10, help="frames per precision per turn for --precisions"
    )
    g.add_argument(
        "--families",
        action="store_true",
        help="time every model family's decode + post-processing at 480x640 on synthetic "
        "outputs (no model needed; --frames, --warmup apply)",
    )
    g.add_argument(
        "--tracking",
        action="store_true",
        help="time the tracker alone: 30 moving objects at --height x --width (no model)",
    )
    g.add_argument(
        "--sizes", default="", help="input-size scaling, e.g. 240x320,480x640,720x1280,1024x2048"
    )
    o = p.add_argument_group("overload / soak (starts the real node)")
    o.add_argument(
        "--overload",
        action="store_true",
        help="publish above the sustainable rate on 1 and 2 cameras",
    )
    o.add_argument("--soak", action="store_true", help="long overload, then lifecycle cycling")
    o.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="publish rate per camera in Hz (0 = 2x the measured single-frame rate)",
    )
    o.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load per phase (default: 60 for --overload, 300 for --soak)",
    )
    o.add_argument(
        "--cameras", default="1,2", help="camera counts to run under --overload (e.g. 1,2)"
    )
    o.add_argument("--window", type=float, default=10.0, help="seconds per latency window")
    o.add_argument(
        "--baseline",
        type=float,
        default=10.0,
        help="seconds of light load before the overload (0 = skip): the node's single-frame latency, "
        "the reference for the overload p99",
    )
    o.add_argument(
        "--baseline-rate", type=float, default=2.0, help="publish rate (Hz) of the light-load phase"
    )
    o.add_argument("--cycles", type=int, default=20, help="lifecycle cycles under --soak")
    o.add_argument("--watch", default="semantic", help="output topic whose arrivals are timed")
    p.add_argument(
        "--large-shm",
        type=int,
        default=0,
        metavar="MB",
        help="Fast DDS: use a shared-memory segment of MB MiB for this run and the node it starts "
        "(the default 512 KiB segment makes best-effort readers lose most VGA frames)",
    )
    p.add_argument("--json", default="", help="also write all results as JSON to this file")
    add_param_argument(p)
    dds_profile.add_argument(p)


# ---------------------------------------------------------------------------------------
# publish sink
# ---------------------------------------------------------------------------------------
#: history depth of the bench's publishers: the node's output publishers' (ros/node.py,
#: reliable, keep last 10). Depth 1 made publish ~0.25 ms cheaper (docs/performance.md).
OUTPUT_DEPTH = 10


class Publish:
    """The publish stage: ``mode`` 'dds' (publishers + a subscriber process), 'serialize', or 'none'."""

    def __init__(self, mode: str, sink: str = "message") -> None:
        self.mode = mode
        self.sink = sink
        self.note = ""
        self._pubs: dict[str, Any] = {}
        self._node = None
        self._sink: subprocess.Popen | None = None
        self._serialize = None
        if mode == "none":
            return
        try:
            from panoptic_ros.bench.loadgen import apply_ros_env

            apply_ros_env()
            import rclpy
            from rclpy.serialization import serialize_message

            self._serialize = serialize_message
        except Exception as exc:  # no ROS at all
            self.mode, self.note = "none", f"no rclpy ({exc})"
            return
        if mode in ("auto", "dds"):
            try:
                self._own_init = not rclpy.ok()
                if self._own_init:
                    rclpy.init()
                self._rclpy = rclpy
                self._node = rclpy.create_node(f"panoptic_bench_{os.getpid()}")
                self.ns = f"/panoptic_bench_pub_{os.getpid()}"
                self.mode = "dds"
            except Exception as exc:
                if mode == "dds":
                    raise
                self.mode, self.note = "serialize", f"DDS unavailable ({exc}); timing serialization"
        else:
            self.mode = "serialize"

    def prepare(self, msgs: dict[str, Any], timeout: float = 20.0) -> None:
        """Create publishers for these outputs and attach a subscriber process (DDS mode)."""
        if self.mode != "dds" or all(k in self._pubs for k in msgs):
            return
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(
            depth=OUTPUT_DEPTH,
            reliability=ReliabilityPolicy.RELIABLE,
            history=HistoryPolicy.KEEP_LAST,
        )
        from sensor_msgs.msg import Image

        specs = []
        for k, m in msgs.items():
            t = Image if isinstance(m, bytes) else type(m)  # serialized images (cdr_image.py)
            if k not in self._pubs:
                self._pubs[k] = self._node.create_publisher(t, f"{self.ns}/{k}", qos)
            specs.append(f"{self.ns}/{k}={t.__module__}:{t.__name__}")
        self._stop_sink()
        from panoptic_ros.bench.loadgen import REPO_DIR, ros_env

        env = ros_env()
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_DIR)] + [p for p in [env.get("PYTHONPATH")] if p]
        )
        self._sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panoptic_ros.bench.loadgen",
                "sink",
                *(["--raw"] if self.sink == "raw" else []),
                *specs,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
            p.get_subscription_count() > 0 for p in self._pubs.values()
        ):
            time.sleep(0.05)
        if not all(p.get_subscription_count() > 0 for p in self._pubs.values()):
            self.note = "subscriber process did not match in time; publishing without a subscriber"

    def __call__(self, msgs: dict[str, Any]) -> None:
        if self.mode == "dds":
            for k, m in msgs.items():
                self._pubs[k].publish(m)
        elif self.mode == "serialize":
            for m in msgs.values():
                if not isinstance(m, bytes):  # bytes: serialized already
                    self._serialize(m)

    @property
    def sink_pid(self) -> int | None:
        """The subscriber process's pid (DDS mode, while it runs)."""
        return self._sink.pid if self._sink is not None and self._sink.poll() is None else None

    def _stop_sink(self) -> None:
        if self._sink is not None and self._sink.poll() is None:
            self._sink.terminate()
            try:
                self._sink.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._sink.kill()
        self._sink = None

    def close(self) -> None:
        self._stop_sink()
        if self._node is not None:
            self._node.destroy_node()
            self._node = None
            if self._own_init and self._rclpy.ok():
                self._rclpy.shutdown()


# ---------------------------------------------------------------------------------------
# the per-frame loop
# ---------------------------------------------------------------------------------------
def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system, all threads) of this process, or of ``pid`` (NaN if gone)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


class CpuMeter:
    """CPU time per timed frame of the bench process (every thread: the frame loop, ONNX
    Runtime's, Fast DDS's) and of the subscriber process: whether a change saves work or only
    moves it to another thread or process shows here, not in the per-stage wall clock."""

    def __init__(self, publish: Publish) -> None:
        self._sink = publish.sink_pid if publish.mode == "dds" else None
        self._t0 = self._sink0 = math.nan

    def start(self) -> None:
        self._t0, self._sink0 = _cpu_s(), _cpu_s(self._sink) if self._sink else math.nan

    def stop(self, timer: StageTimer, frames: int) -> None:
        timer.cpu_ms = (_cpu_s() - self._t0) * 1e3 / frames  # type: ignore[attr-defined]
        timer.sink_cpu_ms = (  # type: ignore[attr-defined]
            (_cpu_s(self._sink) - self._sink0) * 1e3 / frames if self._sink else math.nan
        )


def _as_msg_dict(out: Any) -> dict[str, Any]:
    if out is None:
        return {}
    if isinstance(out, dict):
        return {str(k): v for k, v in out.items() if v is not None}
    if isinstance(out, (list, tuple)):
        d = {}
        for i, item in enumerate(out):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                d[item[0]] = item[1]
            elif item is not None:
                d[f"out{i}"] = item
        return d
    # a dataclass / namespace of messages
    fields = getattr(out, "__dataclass_fields__", None) or vars(out)
    return {
        k: getattr(out, k)
        for k in fields
        if getattr(out, k, None) is not None and not k.startswith("_")
    }


def make_decoder():
    """(name, fn(msg) -> RGB): conversions.image_msg_to_array, else encodings.decode_raw."""
    try:
        from panoptic_ros.ros.conversions import image_msg_to_array

        return "conversions.image_msg_to_array", image_msg_to_array
    except Exception:
        from panoptic_ros.core.encodings import decode_raw

        return "encodings.decode_raw", lambda m: decode_raw(
            m.encoding, m.height, m.width, m.step, m.is_bigendian, m.data
        )


def make_message_builder():
    """(result_to_messages or None, note). Where vision_msgs is missing, detections are left out
    (conversions.detections_msg replaced by a stub in this process only) and the note says so."""
    try:
        from panoptic_ros.ros import conversions
    except Exception as exc:
        return None, f"conversions.result_to_messages unavailable ({type(exc).__name__}: {exc})"
    try:
        conversions._vision_msgs()  # noqa: SLF001 - probe only
    except Exception as exc:
        if hasattr(conversions, "detections_msg"):
            conversions.detections_msg = lambda result, header: None
            return conversions.result_to_messages, (
                f"messages/publish exclude detections: vision_msgs not importable ({str(exc)[:80]})"
            )
    except AttributeError:
        pass
    return conversions.result_to_messages, ""


def open_segmenter(
    args: argparse.Namespace, backend: str, device: str | None = None, precision: str | None = None
):
    from panoptic_ros.cli.params_option import parse_params
    from panoptic_ros.families.factory import build_segmenter

    opts: dict[str, Any] = {}
    dev = args.device if device is None else device
    prec = args.precision if precision is None else precision
    if dev:
        opts["device"] = dev
    if prec:
        opts["precision"] = prec
    if args.threads and backend in ("onnxruntime", "torch"):
        opts["threads"] = args.threads
    return build_segmenter(
        args.model, backend=backend, params=parse_params(getattr(args, "param", None)), **opts
    )


def bench_frames(
    seg: Any,
    *,
    height: int,
    width: int,
    frames: int,
    warmup: int,
    encoding: str,
    publish: Publish,
    overlay: bool = False,
    header_frame: str = "camera",
    form: str = "serialized",
    publisher: str = "inline",
) -> StageTimer:
    """The per-frame loop; returns a StageTimer with every stage (warm-up frames excluded).

    ``form``: label images as serialized bytes, as messages, or ``both`` (the message path
    timed after the serialized one on the same result, same topics, outside e2e).

    ``publisher`` 'thread': a publisher thread (measured here; the node publishes inline): messages + publish
    of frame i run on a second thread (a one-frame hand-off, the loop waits when it is full)
    while the loop decodes, segments and tracks frame i+1. e2e is then the loop's time per frame up to
    the hand-off (its wait for a full hand-off included): the rate-limiting work, as the node's
    worker experiences it; ``latency`` is decode start to publish end of the same frame."""
    if publisher == "thread":
        return _bench_frames_threaded(
            seg,
            height=height,
            width=width,
            frames=frames,
            warmup=warmup,
            encoding=encoding,
            publish=publish,
            overlay=overlay,
            header_frame=header_frame,
            form=form,
        )
    in_msgs = _input_messages(height, width, encoding, header_frame)
    dec_name, decode = make_decoder()
    build, why = make_message_builder()
    build_msg = build
    if build is not None and form != "message":
        build = functools.partial(build, serialized=True)
    taxonomy = seg.taxonomy
    tracker = _node_tracker(taxonomy)
    timer = StageTimer(warmup=warmup)
    clock = time.perf_counter
    # one untimed frame to learn the output topics, attach the subscriber
    if build is not None and publish.mode != "none":
        r = seg.segment(decode(in_msgs[0]))
        publish.prepare(
            _as_msg_dict(
                build(r, in_msgs[0].header, taxonomy, image_rgb=None, want_overlay=overlay)
            )
        )
    cpu = CpuMeter(publish)
    for i, msg, stamp_ns in _frame_schedule(in_msgs, warmup, frames, cpu):
        t0, rgb, result, t2 = _decode_segment_track(
            msg, stamp_ns, decode, seg, tracker, timer, clock
        )
        skipped = 0.0
        both = form == "both" and build_msg is not None
        if both and i % 2:  # odd frames: the message path first (its time is left out of e2e)
            _time_message_path(
                timer, build_msg, publish, result, msg.header, rgb, taxonomy, overlay
            )
            skipped = clock() - t2
            t2 += skipped
        if build is not None:
            out = _as_msg_dict(
                build(
                    result,
                    msg.header,
                    taxonomy,
                    image_rgb=rgb if overlay else None,
                    want_overlay=overlay,
                )
            )
        else:
            out = {}
        t3 = clock()
        publish(out)
        t4 = clock()
        timer.add("messages", (t3 - t2) * 1e3 if build is not None else math.nan)
        timer.add("publish", (t4 - t3) * 1e3 if (out and publish.mode != "none") else math.nan)
        timer.add("e2e", (t4 - t0 - skipped) * 1e3)
        if both and not i % 2:  # even frames: the message path after the serialized one
            _time_message_path(
                timer, build_msg, publish, result, msg.header, rgb, taxonomy, overlay
            )
    cpu.stop(timer, frames)
    timer.decoder = dec_name  # type: ignore[attr-defined]
    timer.note = why  # type: ignore[attr-defined]
    return timer


def _node_tracker(taxonomy: Any) -> Any:
    """The tracker the node gives a camera (config/panoptic.yaml's tracking parameters)."""
    from panoptic_ros.core.tracking import Tracker
    from panoptic_ros.ros import params as P

    return Tracker(P.tracker_config(P.defaults()), taxonomy.label_divisor)


def _input_messages(height: int, width: int, encoding: str, header_frame: str) -> list[Any]:
    """Four synthetic camera frames as Image messages, used in turn by :func:`_frame_schedule`
    (four: the threaded loop's hand-off and its publisher never hold the one being restamped)."""
    from panoptic_ros.bench.loadgen import make_image_msg, synthetic_frames

    return [make_image_msg(f, encoding, header_frame) for f in synthetic_frames(height, width, 4)]


def _frame_schedule(
    in_msgs: list[Any], warmup: int, frames: int, cpu: Any
) -> Iterator[tuple[int, Any, int]]:
    """(index, message, stamp) of each frame of a run (shared by the inline and the threaded
    loop): ``warmup`` untimed frames, then ``frames`` with CPU metering started; the input
    messages in turn, each stamped now, as a camera driver stamps at capture."""
    from panoptic_ros.bench.loadgen import set_stamp

    for i in range(warmup + frames):
        if i == warmup:
            cpu.start()
        msg = in_msgs[i % len(in_msgs)]
        stamp_ns = time.time_ns()
        set_stamp(msg, stamp_ns)
        yield i, msg, stamp_ns


def _decode_segment_track(
    msg: Any, stamp_ns: int, decode, seg: Any, tracker: Any, timer: StageTimer, clock
) -> tuple[float, Any, Any, float]:
    """One frame's decode, segment and track as the node's worker runs them, each stage timed
    (shared by the inline and the threaded loop). Returns (start, rgb, tracked result, end)."""
    t0 = clock()
    rgb = decode(msg)
    t1 = clock()
    result = seg.segment(rgb)
    ts = clock()
    result = tracker.update(result, stamp_ns)
    t2 = clock()
    timer.add("track", (t2 - ts) * 1e3)
    tm = getattr(result, "timings", {}) or {}
    timer.add("decode", (t1 - t0) * 1e3)
    for k in ("preprocess", "infer", "postprocess"):
        timer.add(k, float(tm.get(k, math.nan)))
    known = sum(float(tm.get(k, 0.0)) for k in ("preprocess", "infer", "postprocess"))
    timer.add("segment_other", max(0.0, (ts - t1) * 1e3 - known))
    return t0, rgb, result, t2


def _bench_frames_threaded(
    seg: Any,
    *,
    height: int,
    width: int,
    frames: int,
    warmup: int,
    encoding: str,
    publish: Publish,
    overlay: bool,
    header_frame: str,
    form: str,
) -> StageTimer:
    """:func:`bench_frames` with ``publisher='thread'`` (see there)."""
    import queue
    import threading

    if form == "both":
        raise ValueError("--publisher thread times one publish form: serialized or message")
    in_msgs = _input_messages(height, width, encoding, header_frame)
    dec_name, decode = make_decoder()
    build, why = make_message_builder()
    if build is None:
        raise RuntimeError(f"--publisher thread needs the message builder: {why}")
    if form != "message":
        build = functools.partial(build, serialized=True)
    taxonomy = seg.taxonomy
    tracker = _node_tracker(taxonomy)
    timer = StageTimer(warmup=warmup)
    clock = time.perf_counter
    if publish.mode != "none":
        r = seg.segment(decode(in_msgs[0]))
        publish.prepare(
            _as_msg_dict(
                build(r, in_msgs[0].header, taxonomy, image_rgb=None, want_overlay=overlay)
            )
        )
    handoff: queue.Queue = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def publisher_loop() -> None:
        while True:
            item = handoff.get()
            if item is None:
                return
            t0, result, header, rgb = item
            try:
                t2 = clock()
                out = _as_msg_dict(
                    build(
                        result,
                        header,
                        taxonomy,
                        image_rgb=rgb if overlay else None,
                        want_overlay=overlay,
                    )
                )
                t3 = clock()
                publish(out)
                t4 = clock()
            except BaseException as exc:  # reported by the loop, after the join
                failed.append(exc)
                return
            timer.add("messages", (t3 - t2) * 1e3)
            timer.add("publish", (t4 - t3) * 1e3 if publish.mode != "none" else math.nan)
            timer.add("latency", (t4 - t0) * 1e3)

    thread = threading.Thread(target=publisher_loop, name="bench-publisher", daemon=True)
    thread.start()
    cpu = CpuMeter(publish)
    try:
        for _i, msg, stamp_ns in _frame_schedule(in_msgs, warmup, frames, cpu):
            if failed:
                break
            t0, rgb, result, _ = _decode_segment_track(
                msg, stamp_ns, decode, seg, tracker, timer, clock
            )
            handoff.put((t0, result, msg.header, rgb))
            timer.add("e2e", (clock() - t0) * 1e3)
    finally:
        handoff.put(None)
        thread.join()
    if failed:
        raise failed[0]
    cpu.stop(timer, frames)
    timer.decoder = dec_name  # type: ignore[attr-defined]
    timer.note = why  # type: ignore[attr-defined]
    return timer


def _time_message_path(
    timer: StageTimer, build_msg, publish: Publish, result, header, rgb, taxonomy, overlay: bool
) -> None:
    """``--publish-form both``: the Image-message path (before issue 17) for a frame's result,
    timed as messages_msg and publish_msg (outside e2e), to the same topics."""
    t0 = time.perf_counter()
    out = _as_msg_dict(
        build_msg(
            result, header, taxonomy, image_rgb=rgb if overlay else None, want_overlay=overlay
        )
    )
    t1 = time.perf_counter()
    publish(out)
    timer.add("messages_msg", (t1 - t0) * 1e3)
    timer.add(
        "publish_msg", (time.perf_counter() - t1) * 1e3 if publish.mode != "none" else math.nan
    )


def stage_rows(timer: StageTimer) -> list[tuple]:
    st = timer.stats()
    e2e = st["e2e"].mean
    rows = []
    for name in STAGES:
        s = st.get(name)
        if s is None:
            continue
        share = (
            100.0 * s.mean / e2e
            if (e2e > 0 and name not in ("e2e", "latency") and math.isfinite(s.mean))
            else math.nan
        )
        rows.append((name, s.mean, s.p50, s.p99, share))
    return rows


def result_of(timer: StageTimer) -> dict[str, float]:
    st = timer.stats()
    e2e, infer = st["e2e"].mean, st["infer"].mean
    return {
        "e2e_ms": e2e,
        "e2e_p99_ms": st["e2e"].p99,
        "infer_ms": infer,
        "overhead_ratio": overhead_ratio(e2e, infer),
        "fps": 1000.0 / e2e if e2e > 0 else math.nan,
    }


def _stats_json(timer: StageTimer) -> dict:
    return {k: v.as_dict() for k, v in timer.stats().items()}


# ---------------------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------------------
def run_single(args, publish: Publish, report: dict) -> str:
    seg = open_segmenter(args, args.backend)
    log(
        f"bench: backend={args.backend} device={seg.backend.device} family={seg.family.name} "
        f"{args.height}x{args.width} {args.encoding} frames={args.frames} warmup={args.warmup} publish={publish.mode}"
        + (f" ({publish.note})" if publish.note else "")
    )
    try:
        timer = bench_frames(
            seg,
            height=args.height,
            width=args.width,
            frames=args.frames,
            warmup=args.warmup,
            encoding=args.encoding,
            publish=publish,
            overlay=args.overlay,
            form=args.publish_form,
            publisher=args.publisher,
        )
    finally:
        _close(seg)
    if getattr(timer, "note", ""):
        log(f"note: {timer.note}")
    log(format_table(["stage", "mean ms", "p50 ms", "p99 ms", "% of e2e"], stage_rows(timer), 2))
    r = result_of(timer)
    log(
        f"end-to-end {r['fps']:.1f} frames/s; overhead (e2e - infer) / e2e = {r['overhead_ratio']:.3f}"
    )
    r["cpu_ms"] = getattr(timer, "cpu_ms", math.nan)
    r["sink_cpu_ms"] = getattr(timer, "sink_cpu_ms", math.nan)
    log(
        f"CPU per frame: bench process {r['cpu_ms']:.2f} ms (all threads), subscriber process "
        f"{r['sink_cpu_ms']:.2f} ms"
    )
    if "latency" in timer.names:
        lat = timer.stats()["latency"]
        r["latency_ms"], r["latency_p99_ms"] = lat.mean, lat.p99
        log(f"latency (decode start -> publish end): mean {lat.mean:.2f} ms, p99 {lat.p99:.2f} ms")
    extra = {}
    if "publish_msg" in timer.names:
        extra["publish_ratio"] = publish_ratio(timer)
        # the same frames' e2e had the images gone out as Image messages (the path before issue 17)
        e2e_msg = (
            r["e2e_ms"]
            - _out_ms(timer, "messages", "publish")
            + _out_ms(timer, "messages_msg", "publish_msg")
        )
        extra["overhead_ratio_message"] = overhead_ratio(e2e_msg, r["infer_ms"])
        log(
            "messages + publish: serialized images "
            f"{_out_ms(timer, 'messages', 'publish'):.2f} ms, Image messages "
            f"{_out_ms(timer, 'messages_msg', 'publish_msg'):.2f} ms "
            f"(message / serialized = {extra['publish_ratio']:.2f}); overhead with Image messages "
            f"{extra['overhead_ratio_message']:.3f}"
        )
    report["single"] = {"args": _args_json(args), "stages": _stats_json(timer), **r, **extra}
    return format_kv(
        e2e_ms=r["e2e_ms"], infer_ms=r["infer_ms"], overhead_ratio=r["overhead_ratio"], **extra
    )


def _out_ms(timer: StageTimer, *stages: str) -> float:
    st = timer.stats()
    return sum(st[s].mean for s in stages if s in st and math.isfinite(st[s].mean))


def publish_ratio(timer: StageTimer) -> float:
    """(messages + publish) of the Image-message path / the same of the serialized path, from
    one ``--publish-form both`` run (> 1: serialized is faster)."""
    new = _out_ms(timer, "messages", "publish")
    return _out_ms(timer, "messages_msg", "publish_msg") / new if new > 0 else math.nan


def _gpu_backends() -> list[tuple[str, str, str]]:
    out = []
    try:
        import torch

        if torch.cuda.is_available():
            out += [("torch", "cuda", "fp32"), ("torch", "cuda", "fp16")]
            try:
                import tensorrt  # noqa: F401

                out += [("tensorrt", "cuda", "fp16")]
            except Exception:
                pass
    except Exception:
        pass
    return out


def run_compare(args, publish: Publish, report: dict) -> str:
    if args.backends:
        combos = []
        for b in args.backends.split(","):
            name, _, dev = b.strip().partition(":")
            combos.append((name, dev or args.device or "", args.precision or ""))
    else:
        combos = [("onnxruntime", "cpu", ""), ("torch", "cpu", "")] + _gpu_backends()
    rows, results = [], {}
    for name, dev, prec in combos:
        label = (
            name
            + (f"-{dev}" if dev and dev != "cpu" else "-cpu")
            + (f"-{prec}" if prec and dev != "cpu" else "")
        )
        try:
            seg = open_segmenter(args, name, device=dev, precision=prec)
        except Exception as exc:
            log(f"{label}: unavailable ({type(exc).__name__}: {exc})")
            rows.append(
                (label, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
            )
            results[label] = {"error": str(exc)}
            continue
        log(f"{label}: {args.frames} frames at {args.height}x{args.width} ...")
        try:
            timer = bench_frames(
                seg,
                height=args.height,
                width=args.width,
                frames=args.frames,
                warmup=args.warmup,
                encoding=args.encoding,
                publish=publish,
                overlay=args.overlay,
                form=args.publish_form,
            )
        except Exception as exc:
            log(f"{label}: failed ({type(exc).__name__}: {exc})")
            results[label] = {"error": str(exc)}
            continue
        finally:
            _close(seg)
        st, r = timer.stats(), result_of(timer)
        rows.append(
            (
                label,
                st["preprocess"].mean,
                st["infer"].mean,
                st["infer"].p99,
                st["postprocess"].mean,
                r["e2e_ms"],
                r["e2e_p99_ms"],
                r["fps"],
            )
        )
        results[label] = {"stages": _stats_json(timer), **r}
    log(
        format_table(
            ["backend", "pre ms", "infer ms", "infer p99", "post ms", "e2e ms", "e2e p99", "fps"],
            rows,
            2,
        )
    )
    report["compare"] = results
    ok = {k: v for k, v in results.items() if "e2e_ms" in v}
    if not ok:
        raise RuntimeError("no backend could run")
    first = next(iter(ok.values()))
    fastest = min(ok, key=lambda k: ok[k]["e2e_ms"])
    extra = {f"e2e_ms_{k.replace('-', '_')}": v["e2e_ms"] for k, v in ok.items()}
    return format_kv(
        e2e_ms=first["e2e_ms"],
        infer_ms=first["infer_ms"],
        overhead_ratio=first["overhead_ratio"],
        fastest=fastest,
        **extra,
    )


def run_precisions(args, report: dict) -> str:
    """``--precisions``: interleaved turns per precision (module docstring)."""
    from panoptic_ros.core.synthetic import generate_scene

    precs = [p.strip().lower() for p in args.precisions.split(",") if p.strip()]
    if not precs or len(set(precs)) != len(precs):
        raise ValueError(f"--precisions needs distinct values, got {args.precisions!r}")
    frame = generate_scene(1, args.height, args.width).image
    segs: dict[str, Any] = {}
    try:
        for p in precs:
            segs[p] = open_segmenter(args, args.backend, precision=p)
        feeds = {}
        for p, seg in segs.items():
            prepared = seg.family.prepare([frame], seg.batch_size)
            feeds[p] = {k: np.array(v, copy=True) for k, v in prepared.feeds.items()}
            for _ in range(max(1, args.warmup)):
                seg.backend.infer(feeds[p])
                seg.segment(frame)
        infer: dict[str, list[float]] = {p: [] for p in precs}
        whole: dict[str, list[float]] = {p: [] for p in precs}
        turn = max(1, int(args.turn))
        log(
            f"{args.backend}: {args.frames} frames per precision ({', '.join(precs)}) at "
            f"{args.height}x{args.width}, interleaved in turns of {turn} ..."
        )
        for _ in range(max(1, args.frames // turn)):
            for p, seg in segs.items():
                for _ in range(turn):
                    t0 = time.perf_counter()
                    seg.backend.infer(feeds[p])
                    t1 = time.perf_counter()
                    seg.segment(frame)
                    t2 = time.perf_counter()
                    infer[p].append((t1 - t0) * 1e3)
                    whole[p].append((t2 - t1) * 1e3)
    finally:
        for seg in segs.values():
            _close(seg)
    base = float(np.median(infer[precs[0]]))
    rows, out, kv = [], {}, {}
    for p in precs:
        i_med, s_med = float(np.median(infer[p])), float(np.median(whole[p]))
        i_p90 = float(np.percentile(infer[p], 90))
        speed = base / i_med if i_med > 0 else math.nan
        rows.append((p, i_med, i_p90, s_med, speed))
        out[p] = {"infer_ms": i_med, "infer_p90_ms": i_p90, "segment_ms": s_med, "speedup": speed}
        kv[f"infer_ms_{p}"], kv[f"segment_ms_{p}"] = i_med, s_med
    for p in precs[1:]:
        kv[f"infer_speedup_{p}"] = out[p]["speedup"]
    log(
        format_table(
            ["precision", "infer ms", "infer p90", "segment ms", f"speed-up vs {precs[0]}"], rows, 2
        )
    )
    report["precisions"] = {"backend": args.backend, "turn": turn, **out}
    return format_kv(**kv)


def run_sizes(args, publish: Publish, report: dict) -> str:
    from panoptic_ros.bench import preprocess_ab
    from panoptic_ros.bench.loadgen import synthetic_frames

    sizes = parse_sizes(args.sizes)
    seg = open_segmenter(args, args.backend)
    net_hw = preprocess_ab.network_input_size(seg)
    rows, results = [], {}
    try:
        for h, w in sizes:
            log(f"{args.backend}: {args.frames} frames at {h}x{w} ...")
            timer = bench_frames(
                seg,
                height=h,
                width=w,
                frames=args.frames,
                warmup=args.warmup,
                encoding=args.encoding,
                publish=publish,
                overlay=args.overlay,
                form=args.publish_form,
            )
            st, r = timer.stats(), result_of(timer)
            # old (one cv2.resize) vs new (staged) preprocess, interleaved on the same frames
            ab = (
                preprocess_ab.compare(synthetic_frames(h, w, 4), net_hw, args.frames)
                if net_hw
                else dict.fromkeys(("pre_ms", "pre_single_ms", "pre_speedup"), math.nan)
            )
            if net_hw:
                log(
                    f"  {h}x{w} same-run A/B: preprocess staged {ab['pre_ms']:.2f} ms vs one "
                    f"cv2.resize {ab['pre_single_ms']:.2f} ms (x{ab['pre_speedup']:.2f}); label "
                    f"upsampling separable {ab['up_ms']:.2f} ms vs one INTER_NEAREST "
                    f"{ab['up_single_ms']:.2f} ms (x{ab['up_speedup']:.2f})"
                )
            rows.append(
                (
                    f"{h}x{w}",
                    st["decode"].mean,
                    st["preprocess"].mean,
                    ab["pre_single_ms"],
                    ab["pre_speedup"],
                    st["infer"].mean,
                    st["postprocess"].mean,
                    st["messages"].mean,
                    st["publish"].mean,
                    r["e2e_ms"],
                    r["e2e_p99_ms"],
                    r["fps"],
                    r["overhead_ratio"],
                )
            )
            results[f"{h}x{w}"] = {"stages": _stats_json(timer), **r, "preprocess_ab": ab}
    finally:
        _close(seg)
    log(
        format_table(
            [
                "size",
                "decode",
                "pre",
                "pre 1call",
                "pre x",
                "infer",
                "post",
                "msgs",
                "publish",
                "e2e ms",
                "e2e p99",
                "fps",
                "overhead",
            ],
            rows,
            2,
        )
    )
    report["sizes"] = results
    first = next(iter(results.values()))
    extra = {f"e2e_ms_{k}": v["e2e_ms"] for k, v in results.items()}
    for k, v in results.items():
        extra[f"pre_ms_{k}"] = v["preprocess_ab"]["pre_ms"]
        extra[f"pre_speedup_{k}"] = v["preprocess_ab"]["pre_speedup"]
        extra[f"up_speedup_{k}"] = v["preprocess_ab"].get("up_speedup", math.nan)
    return format_kv(
        e2e_ms=first["e2e_ms"],
        infer_ms=first["infer_ms"],
        overhead_ratio=first["overhead_ratio"],
        **extra,
    )


def _reference_rate(args) -> tuple[float, float]:
    """(single-frame e2e ms, Hz) measured in-process (decode + segment + messages, no publish)."""
    seg = open_segmenter(args, args.backend)
    try:
        timer = bench_frames(
            seg,
            height=args.height,
            width=args.width,
            frames=min(args.frames, 40),
            warmup=min(args.warmup, 5),
            encoding=args.encoding,
            publish=Publish("none"),
        )
    finally:
        _close(seg)
    e2e = timer.stats()["e2e"].mean
    return e2e, 1000.0 / e2e


def _node_params(args) -> dict[str, str]:
    p = {}
    if args.device:
        p["device"] = args.device
    if args.precision:
        p["precision"] = args.precision
    if args.threads:
        p["threads"] = str(args.threads)
    if args.model != "default":
        p["model"] = args.model
    return p


def _phase_json(ph) -> dict:
    d = {
        k: getattr(ph, k)
        for k in (
            "cameras",
            "rate_per_camera",
            "duration_s",
            "published",
            "received",
            "missing_stamps",
            "diag_drops",
            "achieved_publish_rate",
            "output_rate",
            "rss_start_mb",
            "rss_warm_mb",
            "rss_end_mb",
            "threads_start",
            "threads_end",
        )
    }
    d["rss_growth_pct"] = ph.rss_growth_pct
    d["latency"] = ph.latency.as_dict()
    d["windows"] = [{"t": t, **s.as_dict()} for t, s in ph.windows]
    d["diag_values"] = ph.diag_values
    d["diag_counts"] = ph.diag_counts
    return d


def run_families_mode(args, report: dict) -> str:
    """``--families``: decode + post-processing per family and case (bench/families.py)."""
    from panoptic_ros.bench.families import FRAME_HW, GOAL_MS, run_all

    log(
        f"family decode + post-processing (to_result) for a {FRAME_HW[0]}x{FRAME_HW[1]} frame, "
        f"synthetic seeded outputs, {args.frames} frames per case after {args.warmup} warm-up"
    )
    rows = run_all(args.frames, args.warmup)
    log(
        format_table(
            [
                "family",
                "case",
                "instances",
                "median ms",
                "p90 ms",
                "cpu ms",
                f"cpu <= {GOAL_MS:g} ms",
            ],
            [
                (
                    r.family,
                    r.case,
                    r.instances,
                    r.median_ms,
                    r.p90_ms,
                    r.cpu_median_ms,
                    "yes" if r.meets_goal else "no",
                )
                for r in rows
            ],
            2,
        )
    )
    report["families"] = [{**vars(r), "meets_goal": r.meets_goal} for r in rows]
    worst: dict[str, float] = {}
    for r in rows:  # each family's worst case: median wall ms and median CPU ms
        worst[f"{r.family}_ms"] = max(worst.get(f"{r.family}_ms", 0.0), r.median_ms)
        worst[f"{r.family}_cpu_ms"] = max(worst.get(f"{r.family}_cpu_ms", 0.0), r.cpu_median_ms)
    return format_kv(
        **worst,
        cases=len(rows),
        over_goal=sum(not r.meets_goal for r in rows),
    )


def run_tracking_mode(args, report: dict) -> str:
    """``--tracking``: the tracker alone on 30 moving objects (bench/tracking.py)."""
    from panoptic_ros.bench.tracking import GOAL_MS, run_all

    log(
        f"tracking: Tracker.update for 30 moving, occluding objects at {args.height}x{args.width}, "
        f"{args.frames} frames after {args.warmup} warm-up"
    )
    rows = run_all(args.frames, args.warmup, 30, args.height, args.width)
    log(
        format_table(
            [
                "tracker",
                "objects",
                "live tracks",
                "median ms",
                "p90 ms",
                "cpu ms",
                f"<= {GOAL_MS:g} ms",
            ],
            [
                (
                    r.case,
                    r.objects,
                    r.mean_live_tracks,
                    r.median_ms,
                    r.p90_ms,
                    r.cpu_median_ms,
                    "yes" if r.meets_goal else "no",
                )
                for r in rows
            ],
            2,
        )
    )
    report["tracking"] = [{**vars(r), "meets_goal": r.meets_goal} for r in rows]
    d = rows[0]
    return format_kv(
        track_ms=d.median_ms, track_p90_ms=d.p90_ms, track_cpu_ms=d.cpu_median_ms, objects=d.objects
    )


def run_overload_mode(args, report: dict) -> str:
    from panoptic_ros.bench import loadgen

    ref_ms, ref_hz = _reference_rate(args)
    rate = args.rate if args.rate > 0 else 2.0 * ref_hz
    log(
        f"single-frame e2e (in-process, no publish): {ref_ms:.1f} ms = {ref_hz:.1f} Hz; publishing at {rate:.1f} Hz per camera"  # noqa: E501
    )
    cams_list = []
    for n in (int(x) for x in args.cameras.split(",") if x.strip()):
        cams_list.append([""] if n == 1 else [f"cam{i}" for i in range(n)])
    out = {"reference_ms": ref_ms, "reference_hz": ref_hz, "rate": rate, "runs": []}
    summary: dict[str, Any] = {}
    baseline_ms = math.nan
    for cams in cams_list:
        runs = loadgen.run_overload(
            camera_sets=[cams],
            rate=rate,
            duration=args.duration if args.duration is not None else 60.0,
            height=args.height,
            width=args.width,
            encoding=args.encoding,
            backend=args.backend,
            extra_params=_node_params(args),
            window_s=args.window,
            watch=args.watch,
            baseline=(args.baseline_rate, args.baseline)
            if (args.baseline > 0 and cams == cams_list[0])
            else None,
        )
        for r in runs:
            ph = r["load"]
            if "baseline" in r:
                baseline_ms = r["baseline"].latency.mean
            n = len(r["cameras"])
            tag = "" if n == 1 else f"_{n}cam"
            summary.update(
                {
                    f"output_hz{tag}": ph.output_rate,
                    f"p50_ms{tag}": ph.latency.p50,
                    f"p99_ms{tag}": ph.latency.p99,
                    f"drops{tag}": ph.missing_stamps,
                    f"diag_drops{tag}": ph.diag_drops,
                    f"rss_growth_pct{tag}": ph.rss_growth_pct,
                    f"threads_start{tag}": ph.threads_start,
                    f"threads_end{tag}": ph.threads_end,
                    f"node_exit{tag}": r["node_exit"],
                    f"node_latency_ms{tag}": ph.diag_counts.get("latency_mean_ms", math.nan),
                    f"node_p99_ms{tag}": ph.diag_counts.get("latency_p99_ms", math.nan),
                }
            )
            out["runs"].append(
                {
                    "cameras": r["cameras"],
                    "node_exit": r["node_exit"],
                    "load": _phase_json(ph),
                    **({"baseline": _phase_json(r["baseline"])} if "baseline" in r else {}),
                }
            )
    report["overload"] = out
    ref = baseline_ms if math.isfinite(baseline_ms) else ref_ms
    p99_ratio = summary.get("p99_ms", math.nan) / ref if ref > 0 else math.nan
    log(
        f"reference latency {ref:.1f} ms ({'node at light load' if math.isfinite(baseline_ms) else 'in-process'}); "
        f"1-camera p99 under overload = {p99_ratio:.2f}x"
    )
    return format_kv(single_ms=ref, rate_hz=rate, p99_ratio=p99_ratio, **summary)


def run_soak_mode(args, report: dict) -> str:
    from panoptic_ros.bench import loadgen

    ref_ms, ref_hz = _reference_rate(args)
    rate = args.rate if args.rate > 0 else 2.0 * ref_hz
    duration = args.duration if args.duration is not None else 300.0
    log(f"soak: {duration:.0f} s at {rate:.1f} Hz, then {args.cycles} lifecycle cycles")
    runs = loadgen.run_overload(
        camera_sets=[[""]],
        rate=rate,
        duration=duration,
        height=args.height,
        width=args.width,
        encoding=args.encoding,
        backend=args.backend,
        extra_params=_node_params(args),
        window_s=max(args.window, duration / 20),
        watch=args.watch,
        lifecycle_cycles=args.cycles,
        after_cycles_s=min(20.0, duration),
    )
    r = runs[0]
    ph, after, cycles = r["load"], r.get("after"), r.get("cycles", [])
    end_rss = after.rss_end_mb if after else (cycles[-1]["rss_mb"] if cycles else ph.rss_end_mb)
    end_thr = after.threads_end if after else (cycles[-1]["threads"] if cycles else ph.threads_end)
    cycles_ok = sum(1 for c in cycles if c["ok"])
    rss_growth = growth_pct(ph.rss_warm_mb, end_rss)
    report["soak"] = {
        "rate": rate,
        "load": _phase_json(ph),
        "cycles": cycles,
        "after": _phase_json(after) if after else None,
        "node_exit": r["node_exit"],
    }
    if cycles:
        log(
            format_table(
                ["cycle", "ok", "seconds", "rss MB", "threads"],
                [(c["cycle"], c["ok"], c["seconds"], c["rss_mb"], c["threads"]) for c in cycles],
                2,
            )
        )
    return format_kv(
        rss_growth_pct=rss_growth,
        threads_start=ph.threads_start,
        threads_end=end_thr,
        p99_ms=ph.latency.p99,
        cycles_ok=cycles_ok,
        cycles=args.cycles,
        output_hz_after=(after.output_rate if after else math.nan),
        node_exit=r["node_exit"],
    )


# ---------------------------------------------------------------------------------------
def _close(seg: Any) -> None:
    """Close a Segmenter; a failure to close must not hide the run's results."""
    try:
        seg.close()
    except Exception as exc:
        log(f"note: closing the model failed: {type(exc).__name__}: {exc}")


def _args_json(args) -> dict:
    return {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("_") and isinstance(v, (str, int, float, bool))
    }


#: The runs bench makes; each is its own run, so two in one command would silently drop one.
_MODES = ("soak", "overload", "families", "precisions", "tracking", "compare", "sizes")


def usage_error(args: argparse.Namespace) -> str | None:
    """A flag combination bench cannot honour, named before any model loads (exit 2) rather
    than a run that silently ignores a flag or fails after the model loaded."""
    chosen = [f"--{m}" for m in _MODES if getattr(args, m)]
    if len(chosen) > 1:
        return f"{' and '.join(chosen)} are separate runs: choose one"
    if args.precisions:
        precs = [p.strip().lower() for p in args.precisions.split(",") if p.strip()]
        unknown = [p for p in precs if p not in PRECISIONS]
        if unknown:
            return (
                f"--precisions: unknown {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}"
            )
        if not precs or len(set(precs)) != len(precs):
            return f"--precisions needs distinct values, got {args.precisions!r}"
    if args.publisher == "thread" and args.publish_form == "both":
        return "--publisher thread times one publish form: serialized or message, not both"
    if args.sink != "message" and args.publish in ("serialize", "none"):
        return (
            f"--sink {args.sink} is the subscriber process of --publish dds (or auto); "
            f"--publish {args.publish} starts none"
        )
    return None


def run(args: argparse.Namespace) -> int:
    bad = usage_error(args)
    if bad:
        log(f"error: {bad}")
        return 2
    try:
        parse_size(f"{args.height}x{args.width}")
        if args.sizes:
            parse_sizes(args.sizes)
    except ValueError as exc:
        log(f"error: {exc}")
        return 2
    if args.frames < 1 or args.warmup < 0:
        log("error: --frames must be >= 1 and --warmup >= 0")
        return 2
    if args.large_shm > 0:
        from panoptic_ros.bench.loadgen import use_large_shm

        log(
            f"Fast DDS profile with a {args.large_shm} MiB shared-memory segment: {use_large_shm(args.large_shm)}"
        )
    else:  # the profile the node runs with (launch files apply the shipped one), unless told
        try:
            log(
                f"Fast DDS profile: {dds_profile.apply(args.dds_profile) or 'none (Fast DDS defaults)'}"
            )
        except FileNotFoundError as exc:
            log(f"error: {exc}")
            return 2
    report: dict[str, Any] = {"machine": machine_info()}
    log(
        f"machine: {report['machine']['cpu']} x{report['machine']['nproc']} (load avg {report['machine']['loadavg']})"
    )
    try:
        if args.soak:
            line = run_soak_mode(args, report)
        elif args.overload:
            line = run_overload_mode(args, report)
        elif args.families:
            line = run_families_mode(args, report)
        elif args.precisions:  # the backend call and segment() only: no messages, no DDS
            line = run_precisions(args, report)
        elif args.tracking:
            line = run_tracking_mode(args, report)
        else:
            publish = Publish(args.publish, args.sink)
            try:
                if args.compare:
                    line = run_compare(args, publish, report)
                elif args.sizes:
                    line = run_sizes(args, publish, report)
                else:
                    line = run_single(args, publish, report)
            finally:
                publish.close()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:
        log(f"error: {type(exc).__name__}: {exc}")
        if os.environ.get("PANOPTIC_DEBUG"):
            raise
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=_json_default))
    print(line, flush=True)
    return 0


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Stats):
        return o.as_dict()
    return str(o)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        la = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        la = "?"
    return {"cpu": cpu, "nproc": os.cpu_count(), "loadavg": la}
