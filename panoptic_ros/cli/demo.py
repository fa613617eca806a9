"""``panoptic-ros demo``: the one-command tour, about a minute on a laptop CPU.

1. Writes a synthetic camera bag (procedural street scenes from ``synthetic.py``, validation
   seeds, 480x640 rgb8 at 10 Hz) to ``OUT/camera_bag``; the exact ground truth stays in memory.
2. Runs the node's pipeline on it with ``process-bag`` (no DDS) into ``OUT/panoptic_bag``
   (MCAP: inputs + semantic, instance, panoptic, detections, overlay, label_info).
3. With ``--live``: also starts the real ``panoptic_node`` as a subprocess, replays the camera
   bag to it over DDS at ``--rate`` and records its outputs into ``OUT/live_bag``; reports how
   many frames the node did not publish (latest-frame policy, or lost in transport) and whether the
   live results equal the offline ones. Replay, recorder and node use ``--dds-profile`` (default:
   the shipped config/fastdds_large_frames.xml) unless a profile is set already (under the
   variable the loaded Fast DDS reads: ros/dds_profile.py).
4. Reads the outputs back from the bag, scores them against the ground truth (PQ / SQ / RQ),
   writes ``OUT/overlays/*.png``, ``OUT/contact_sheet.png`` (input | prediction | ground truth)
   and ``OUT/summary.txt``.

Last stdout line: ``frames= pq= sq= rq= mean_ms= p99_ms= fps= out=`` (+ ``live_frames= live_dropped=``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from panoptic_ros.ros import dds_profile

HELP = "generate a synthetic camera bag, segment it like the node does, score it, write overlays + contact sheet"

CAMERA_TOPIC = "/camera/image_raw"


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo_out", help="output directory (default ./demo_out)")
    p.add_argument(
        "--frames", type=int, default=30, help="frames in the synthetic bag (default 30)"
    )
    p.add_argument(
        "--size", default="480x640", metavar="HxW", help="camera image size (default 480x640)"
    )
    p.add_argument(
        "--fps", type=float, default=10.0, help="camera rate of the synthetic bag (default 10)"
    )
    p.add_argument(
        "--model", default=None, help="model directory, 'default' or .onnx (default: params file)"
    )
    p.add_argument("--backend", default=None, help="backend (default: params file, 'auto')")
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)"
    )
    p.add_argument(
        "--overlays",
        type=int,
        default=4,
        metavar="N",
        help="overlay PNGs / contact sheet rows (default 4)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="also run the real panoptic_node over DDS (replay + record) and compare",
    )
    p.add_argument(
        "--rate", type=float, default=1.0, help="--live replay rate factor (default 1; 0 = max)"
    )
    dds_profile.add_argument(p)


def _image_array(msg) -> np.ndarray:
    """Array of an output Image (mono8, 16UC1, 32SC1, rgb8), honouring step and byte order."""
    dtypes = {
        "mono8": (np.uint8, 1),
        "8UC1": (np.uint8, 1),
        "16UC1": (np.uint16, 1),
        "mono16": (np.uint16, 1),
        "32SC1": (np.int32, 1),
        "rgb8": (np.uint8, 3),
        "bgr8": (np.uint8, 3),
    }
    dt, ch = dtypes[msg.encoding]
    dt = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[
        :, : msg.width * ch * dt.itemsize
    ]
    arr = rows.copy().view(dt).astype(dt.newbyteorder("="))
    return arr.reshape(msg.height, msg.width, ch) if ch > 1 else arr.reshape(msg.height, msg.width)


def read_outputs(
    bag: Path, namespace: str, topics: tuple[str, ...] = ("panoptic", "overlay")
) -> dict[str, dict[int, np.ndarray]]:
    """{name: {header stamp: array}} for ``namespace/name`` image topics of ``bag``."""
    from panoptic_ros.bags.messages import deserialize
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.ros.conversions import stamp_to_ns

    out: dict[str, dict[int, np.ndarray]] = {n: {} for n in topics}
    want = {f"{namespace}/{n}": n for n in topics}
    with BagReader(bag) as reader:
        present = [t for t in want if t in reader.topics]
        for rec in reader.messages(present):
            msg = deserialize(rec, bag)
            out[want[rec.topic]][stamp_to_ns(msg.header.stamp)] = _image_array(msg)
    return out


def _clear_previous(out: Path) -> None:
    from panoptic_ros.bags.writer import remove_bag

    for name in ("camera_bag", "panoptic_bag", "live_bag"):
        remove_bag(out / name)
    for png in (out / "overlays").glob("frame_*.png") if (out / "overlays").is_dir() else ():
        png.unlink()


def run(args) -> int:
    from panoptic_ros.bags.messages import BagError
    from panoptic_ros.bags.synthetic import write_synthetic_bag
    from panoptic_ros.cli import process_bag as pb
    from panoptic_ros.cli.progress import progress_bar
    from panoptic_ros.evaluation.metrics import PanopticQuality

    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"demo: --size must look like 480x640, got {args.size!r}", file=sys.stderr)
        return 2
    if args.frames < 1:
        print("demo: --frames must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _clear_previous(out)
    except BagError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    t_all = time.perf_counter()

    # 1. synthetic camera bag
    print(
        f"demo: writing {args.frames} synthetic {h}x{w} frames to {out / 'camera_bag'}",
        file=sys.stderr,
    )
    bar = progress_bar(args.frames, "camera bag")
    cam = write_synthetic_bag(
        out / "camera_bag",
        frames=args.frames,
        height=h,
        width=w,
        topic=CAMERA_TOPIC,
        storage=args.storage,
        fps=args.fps,
        keep_images=True,
        progress=lambda i: bar.update(1),
    )
    bar.close()
    gt = {f.stamp: f for f in cam.frames}

    # 2. offline pipeline
    cfg = pb.load_settings(None, args.model, args.backend)
    print(f"demo: loading model {cfg['model']!r} (backend {cfg['backend']!r})", file=sys.stderr)
    try:
        segmenter = pb.make_segmenter(cfg)
    except Exception as exc:
        print(f"demo: cannot load the model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        backend_name = segmenter.backend.name
        stats = pb.process_bag(
            out / "camera_bag",
            out / "panoptic_bag",
            segmenter=segmenter,
            storage=args.storage,
            overlay=True,
        )
    finally:
        segmenter.close()
    if stats.interrupted:
        print(stats.summary())
        return 130
    ns = stats.namespaces[CAMERA_TOPIC]

    # 3. live run over DDS
    live = None
    if args.live:
        try:  # this process (replay, recorder) and the node it starts; an existing env setting wins
            dds_profile.apply(getattr(args, "dds_profile", None))
        except FileNotFoundError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        live = run_live(out, cam, cfg, rate=args.rate, storage=args.storage)

    # 4. score, pictures, summary
    outputs = read_outputs(out / "panoptic_bag", ns)
    pq = PanopticQuality(segmenter.taxonomy)
    for stamp, pred in sorted(outputs["panoptic"].items()):
        pq.update(pred, gt[stamp].panoptic)
    report = pq.compute()
    if live is not None and live.get("bag"):
        live_out = read_outputs(live["bag"], live["ns"], ("panoptic",))["panoptic"]
        same = [
            np.array_equal(outputs["panoptic"][s], a)
            for s, a in live_out.items()
            if s in outputs["panoptic"]
        ]
        live["identical"] = sum(same)
    pictures = write_pictures(out, cam, outputs, segmenter.taxonomy, args.overlays)

    seconds = time.perf_counter() - t_all
    summary = (
        f"frames={stats.frames} pq={report.pq:.4f} sq={report.sq:.4f} rq={report.rq:.4f} "
        f"mean_ms={stats.mean_ms:.1f} p99_ms={stats.p99_ms:.1f} fps={stats.fps:.2f} skipped={stats.skipped} "
        f"backend={backend_name} seconds={seconds:.1f}"
    )
    if live is not None:
        summary += (
            f" live_frames={live['received']} live_dropped={live['dropped']} "
            f"live_identical={live.get('identical', 0)}"
        )
    summary += f" out={out}"
    lines = [
        f"demo: {stats.frames} frames {h}x{w} segmented in {stats.seconds:.1f} s ({stats.fps:.2f} frames/s; "
        f"pipeline mean {stats.mean_ms:.1f} ms, p99 {stats.p99_ms:.1f} ms, backend {backend_name})",
        f"demo: panoptic quality vs ground truth: PQ {report.pq:.3f}  SQ {report.sq:.3f}  RQ {report.rq:.3f}  "
        f"(things PQ {report.pq_thing:.3f}, stuff PQ {report.pq_stuff:.3f})",
        f"demo: camera bag    {out / 'camera_bag'}",
        f"demo: output bag    {out / 'panoptic_bag'}  ({sum(stats.counts.values())} messages; "
        f"ros2 bag play / Foxglove)",
    ]
    if live is not None:
        lines.append(
            f"demo: live run      {live.get('bag', '-')}: node published {live['received']} of "
            f"{live['sent']} frames ({live['dropped']} not: latest-frame policy or transport loss), "
            f"{live.get('identical', 0)} identical to offline; node exit code {live.get('rc')}"
        )
    lines += [
        f"demo: overlays      {', '.join(str(p) for p in pictures['overlays'][:2])}"
        + (" ..." if len(pictures["overlays"]) > 2 else ""),
        f"demo: contact sheet {pictures['sheet']}",
    ]
    for line in lines:
        print(line, file=sys.stderr)
    (out / "summary.txt").write_text("\n".join(lines) + "\n" + summary + "\n")
    print(summary)
    return 0 if not stats.problems and (live is None or live.get("ok")) else 1


def write_pictures(out: Path, cam, outputs: dict, taxonomy, n: int) -> dict:
    from panoptic_ros.core.contact_sheet import contact_sheet, write_png
    from panoptic_ros.core.visualize import overlay

    stamps = sorted(outputs["overlay"])
    n = max(1, min(n, len(stamps))) if stamps else 0
    picks = [stamps[round(i * (len(stamps) - 1) / max(1, n - 1))] for i in range(n)] if n else []
    gt = {f.stamp: f for f in cam.frames}
    (out / "overlays").mkdir(exist_ok=True)
    rows, titles, paths = [], [], []
    for s in picks:
        idx = next(i for i, f in enumerate(cam.frames) if f.stamp == s)
        p = out / "overlays" / f"frame_{idx:03d}.png"
        write_png(p, outputs["overlay"][s])
        paths.append(p)
        f = gt[s]
        sem = np.where(f.panoptic >= 0, f.panoptic // taxonomy.label_divisor, 255).astype(np.uint8)
        inst = np.where(f.panoptic >= 0, f.panoptic % taxonomy.label_divisor, 0).astype(np.uint16)
        rows.append([f.image, outputs["overlay"][s], overlay(f.image, sem, inst, taxonomy)])
        titles.append(f"frame {idx}")
    sheet = out / "contact_sheet.png"
    if rows:
        write_png(
            sheet,
            contact_sheet(
                rows, column_titles=["input", "prediction", "ground truth"], row_titles=titles
            ),
        )
    return {"overlays": paths, "sheet": sheet}


def run_live(
    out: Path,
    cam,
    cfg: dict,
    *,
    rate: float = 1.0,
    storage: str = "mcap",
    startup_timeout: float = 90.0,
) -> dict:
    """Start panoptic_node, replay ``cam`` to it over DDS, record its outputs (see the docstring)."""
    import rclpy

    from panoptic_ros.bags.messages import IMAGE_TYPE
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.recorder import TopicRecorder
    from panoptic_ros.bags.writer import BagWriter
    from panoptic_ros.cli.replay import replay

    ns = f"/panoptic_demo_{os.getpid()}"
    image_topic = f"{ns}/camera/image_raw"
    exe = Path(sys.executable).with_name("panoptic_node")
    cmd = [
        str(exe) if exe.exists() else "panoptic_node",
        "--ros-args",
        "-r",
        f"__ns:={ns}",
        "-r",
        f"image:={image_topic}",
        "-p",
        f"model:={cfg['model']}",
        "-p",
        f"backend:={cfg['backend']}",
    ]
    print(f"demo: live: starting {' '.join(cmd)}", file=sys.stderr)
    log = open(out / "live_node.log", "w")
    node = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    result = {
        "sent": len(cam.frames),
        "received": 0,
        "dropped": len(cam.frames),
        "ns": ns,
        "ok": False,
    }
    rclpy.init(args=[])
    writer = BagWriter(out / "live_bag", storage).open()
    recorder = None
    try:
        topics = {f"{ns}/{n}": IMAGE_TYPE for n in ("semantic", "instance", "panoptic")}
        topics[f"{ns}/detections"] = "vision_msgs/msg/Detection2DArray"
        topics[f"{ns}/label_info"] = "vision_msgs/msg/LabelInfo"
        recorder = TopicRecorder(
            writer, topics, latched=[f"{ns}/label_info"], node_name="panoptic_demo_recorder"
        )
        recorder.start()
        deadline = time.monotonic() + startup_timeout
        while recorder.publisher_count(f"{ns}/semantic") == 0:
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"panoptic_node did not come up (see {out / 'live_node.log'})")
            time.sleep(0.1)
        with BagReader(cam.path) as reader:
            stats = replay(
                reader,
                [CAMERA_TOPIC],
                {CAMERA_TOPIC: IMAGE_TYPE},
                remaps={CAMERA_TOPIC: image_topic},
                rate=rate,
                wait_for_subscribers=30.0,
                start_delay=0.5,
                node_name="panoptic_demo_replay",
            )
        result["sent"] = stats["frames"]
        # wait until the node has worked off its last frame (no output for 2 s)
        settle = time.monotonic() + 30.0
        while time.monotonic() < settle:
            time.sleep(0.2)
            if len(recorder.stamps[f"{ns}/semantic"]) >= stats["frames"] or (
                recorder.last_arrival and time.monotonic() - recorder.last_arrival > 2.0
            ):
                break
        got = recorder.stamps[f"{ns}/semantic"]
        result["received"] = len(set(got))
        result["dropped"] = result["sent"] - result["received"]
        result["ok"] = True
        result["bag"] = out / "live_bag"
    except Exception as exc:
        print(f"demo: live run failed: {exc}", file=sys.stderr)
    finally:
        if recorder is not None:
            recorder.stop()
        writer.close()
        rclpy.try_shutdown()
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        result["rc"] = node.returncode
        result["ok"] = result["ok"] and node.returncode == 0
        log.close()
    return result
