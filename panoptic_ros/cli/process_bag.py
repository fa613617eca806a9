"""``panoptic-ros process-bag IN OUT``: run the pipeline on every camera frame of a bag, no DDS.

IN is a rosbag2 bag (directory, ``.mcap`` or ``.db3``) or a ROS 1 ``.bag`` (messages converted
to their ROS 2 types; OUT is always rosbag2). By default the camera image topics are segmented
(``bags.topics.camera_encoding``: colour / mono / Bayer / YUV Images and CompressedImages);
depth and other non-camera images (``16UC1``, ``32FC1``, ``compressedDepth``, ...) and the
``/compressed`` twin of a raw topic are skipped and listed (``skipped_topics=``); ``--topics``
names the topics to segment, whatever they hold. For each frame, in log-time order: decode
(conversions.image_msg_to_array), segment (pipeline.Segmenter), track (core.tracking.Tracker, one
per topic, configured by the node's ``tracking*`` parameters: the same frames in the same order get
the node's track ids), build the very messages the node publishes
(conversions.result_to_messages / label_info_msg) and store their raw CDR in OUT, with
the input frame's header and the input message's log time. OUT holds, per segmented topic,
under the topic's namespace ``NS`` (``/cam/image_raw`` and ``/cam/image_raw/compressed`` ->
``/cam``):

    every input topic (camera, camera_info, tf, depth, ...) copied unchanged: same type,
    definition, hash, QoS, log times and bytes (``--no-inputs`` leaves them all out)
    NS/semantic NS/instance NS/panoptic        sensor_msgs/Image, one per processed frame
    NS/detections                              vision_msgs/Detection2DArray, one per processed frame
    NS/overlay, NS/panoptic_rgb                with ``--overlay`` / ``--panoptic-rgb``
    NS/label_info                              vision_msgs/LabelInfo once (first frame's header;
                                               offered QoS reliable + transient_local)

Frames that cannot be used (corrupt CDR, undecodable image, a ROS 1 message that does not
convert) are skipped with a message naming the file, topic, message index and log time; so is
the rest of a truncated input.

The input is never at risk: OUT equal to IN, inside IN or containing IN is refused (with or
without ``--overwrite``), and OUT is written into a hidden staging sibling
(``.OUT.staging-PID``) that replaces OUT only when the run completes. An interrupted (Ctrl-C,
SIGTERM) or failed run leaves a previous OUT untouched and keeps what it did, finalised, as
``OUT.partial``.

Exit status: 0 all frames processed; 1 finished but something was skipped or unreadable (OUT is
valid); 2 nothing could be done (bad arguments, unreadable input, model error); 130 interrupted.
Last stdout line, on failure too: ``frames= skipped= topics= seconds= fps= mean_ms= p99_ms=
copied= skipped_topics= out= [interrupted=1] [error=REASON]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.cli import raise_if_interrupted
from panoptic_ros.cli.params_option import add_param_argument, parse_params

HELP = "run the panoptic pipeline on every image of a bag (no DDS) and write a bag with the node's outputs"

OUTPUTS = ("semantic", "instance", "panoptic", "detections")


def add_arguments(p) -> None:
    p.add_argument(
        "input", metavar="IN", help="input bag (rosbag2 directory, .mcap or .db3, ROS 1 .bag)"
    )
    p.add_argument(
        "output",
        metavar="OUT",
        help="output rosbag2 directory (must not exist, see --overwrite; never IN, inside or around IN)",
    )
    p.add_argument(
        "--topics",
        nargs="+",
        metavar="TOPIC",
        help="image topics to segment, whatever their encoding (default: the camera image topics)",
    )
    p.add_argument(
        "--storage",
        choices=("mcap", "sqlite3"),
        default="mcap",
        help="output storage (default mcap)",
    )
    p.add_argument(
        "--model", default=None, help="model directory, 'default' or .onnx (default: params file)"
    )
    p.add_argument(
        "--backend",
        default=None,
        help="auto | onnxruntime | torch | tensorrt (default: params file)",
    )
    p.add_argument(
        "--params-file",
        default=None,
        help="node parameter file (model, backend, center_threshold, stuff_area_min, "
        "min_instance_area, threads, device, precision, tracking*); default config/panoptic.yaml",
    )
    add_param_argument(p)
    p.add_argument(
        "--overlay", action="store_true", help="also write NS/overlay (rgb8 colour blend)"
    )
    p.add_argument(
        "--panoptic-rgb", action="store_true", help="also write NS/panoptic_rgb (COCO id colours)"
    )
    p.add_argument("--no-inputs", action="store_true", help="do not copy the input topics into OUT")
    p.add_argument(
        "--max-frames", type=int, default=0, metavar="N", help="stop after N frames (0 = all)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT if it is an existing bag (only once the new one is complete)",
    )


@dataclass
class ProcessStats:
    """What a run did. ``out``: where the written bag is (OUT after a complete run,
    ``OUT.partial`` after an interrupted/failed one, None if nothing was kept)."""

    out: Path | None
    frames: int = 0
    skipped: int = 0
    seconds: float = 0.0
    pipeline_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False
    error: str = ""
    namespaces: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: image topics not segmented (not camera images) -> why
    skipped_topics: dict[str, str] = field(default_factory=dict)
    #: input topics written to OUT unchanged -> messages copied
    copied: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.pipeline_ms)) if self.pipeline_ms else 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.pipeline_ms, 99)) if self.pipeline_ms else 0.0

    def summary(self) -> str:
        """The ``key=value`` line. ``skipped_topics``: comma-separated, ``-`` if none;
        ``copied``: input messages copied unchanged; ``error``: a one-word reason."""
        s = (
            f"frames={self.frames} skipped={self.skipped} topics={len(self.namespaces)} seconds={self.seconds:.3f} "
            f"fps={self.fps:.2f} mean_ms={self.mean_ms:.1f} p99_ms={self.p99_ms:.1f} "
            f"copied={sum(self.copied.values())} skipped_topics={','.join(self.skipped_topics) or '-'} "
            f"out={self.out or '-'}"
        )
        if self.interrupted:
            s += " interrupted=1 error=interrupted"
        elif self.error:
            s += f" error={self.error.split(':', 1)[0] or 'failed'}"
        return s


def output_namespaces(topics: Sequence[str]) -> dict[str, str]:
    """input topic -> output namespace; topics sharing a namespace get their own (full name)."""
    from panoptic_ros.bags.topics import output_namespace

    first = {t: output_namespace(t) for t in topics}
    ns = dict(first)
    for t in topics:
        if sum(1 for v in first.values() if v == first[t]) > 1:
            base = t[: -len("/compressed")] if t.endswith("/compressed") else t
            ns[t] = base.rstrip("/")
    for t in topics:  # X and X/compressed both asked for: the compressed one keeps its full name
        if t.endswith("/compressed") and sum(1 for v in ns.values() if v == ns[t]) > 1:
            ns[t] = t.rstrip("/")
    return ns


def load_settings(
    params_file: str | None, model: str | None, backend: str | None
) -> dict[str, Any]:
    """Node parameters (config/panoptic.yaml, then ``params_file``), then the explicit options."""
    from panoptic_ros.ros import params as P

    cfg = P.defaults()
    if params_file:
        cfg.update(P.read_params_file(params_file))
    if model:
        cfg["model"] = model
    if backend:
        cfg["backend"] = backend
    return cfg


def make_segmenter(cfg: dict[str, Any], params: dict[str, Any] | None = None):
    """The Segmenter the node would build from these parameters (families.factory), then the
    ``--param`` thresholds (an unknown name is an error naming the known ones)."""
    from panoptic_ros.families.factory import segmenter_from_settings

    return segmenter_from_settings(cfg, 1, params)


def process_bag(
    input_path: str | Path,
    output_path: str | Path,
    *,
    segmenter: Any,
    topics: Sequence[str] | None = None,
    storage: str = "mcap",
    overlay: bool = False,
    panoptic_rgb: bool = False,
    copy_inputs: bool = True,
    max_frames: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    tracking: Any = None,
) -> ProcessStats:
    """Process ``input_path`` into the bag ``output_path``; see the module docstring.

    ``tracking``: the core.tracking.TrackerConfig of every topic's tracker (None: the node's
    defaults from config/panoptic.yaml).

    Raises BagError when OUT is refused (``check_output_path``), the input cannot be opened
    or has no camera topic, or the output cannot be created (nothing written, nothing
    removed). Everything after that is reported in the returned stats. The bag is written
    into a staging sibling and replaces OUT only when the run completes; an interrupted
    (KeyboardInterrupt, which sets ``interrupted``) or failed run leaves OUT as it was and
    keeps what it wrote as ``OUT.partial`` (``stats.out``).
    """
    from panoptic_ros.bags.messages import (
        IMAGE_TYPE,
        BagError,
        BagMessageError,
        deserialize,
        serialize,
    )
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.writer import BagWriter, StagedBag, check_output_path, signals_held
    from panoptic_ros.cli.progress import progress_bar
    from panoptic_ros.core.tracking import Tracker
    from panoptic_ros.ros import params as P
    from panoptic_ros.ros.conversions import (
        ImageDecodeError,
        image_msg_to_array,
        label_info_msg,
        result_to_messages,
        stamp_to_ns,
    )

    check_output_path([input_path], output_path, overwrite=overwrite)
    taxonomy = segmenter.taxonomy
    if tracking is None:
        tracking = P.tracker_config(P.defaults())
    trackers: dict[str, Tracker] = {}  # per input topic, as the node has one per camera
    stats = ProcessStats(Path(output_path))
    with BagReader(input_path) as reader:
        image_topics, stats.skipped_topics = reader.camera_topics(topics)
        infos = reader.topics
        stats.problems.extend(reader.problems)
        for p in reader.problems:
            log(f"process-bag: warning: {p}")
        for t, why in stats.skipped_topics.items():
            log(
                f"process-bag: not segmenting {t}: {why}; "
                "name it with --topics to process it anyway"
            )
        stats.namespaces = output_namespaces(image_topics)
        for t, ns in stats.namespaces.items():
            log(
                f"process-bag: {t} [{infos[t].msgtype}, {infos[t].count} msgs] -> {ns or ''}/{{semantic,instance,"
                f"panoptic,detections,label_info{',overlay' if overlay else ''}{',panoptic_rgb' if panoptic_rgb else ''}}}"  # noqa: E501
            )
        staged = StagedBag(output_path)
        writer = BagWriter(staged.path, storage)
        try:
            writer.open()
        except BagError:
            staged.abandon(keep_partial=False)
            raise
        total = sum(infos[t].count for t in image_topics)
        if max_frames:
            total = min(total, max_frames)
        bar = progress_bar(total, "process-bag", disable=None if progress is None else not progress)
        label_done: set[str] = set()
        copied: set[str] = set()  # input topics written to OUT unchanged
        t_start = time.perf_counter()
        complete = False
        try:
            out_names = [
                *OUTPUTS,
                *(["overlay"] if overlay else []),
                *(["panoptic_rgb"] if panoptic_rgb else []),
            ]
            if copy_inputs:
                for t, info in sorted(infos.items()):
                    try:
                        writer.add_topic(
                            t,
                            info.msgtype,
                            qos=list(info.qos),  # as recorded, also when none
                            msgdef=info.msgdef or None,
                            digest=info.digest or None,
                        )
                        copied.add(t)
                    except BagError as exc:
                        stats.problems.append(f"{t} not copied: {exc}")
                        log(f"process-bag: warning: input topic {t} not copied: {exc}")
            for ns in stats.namespaces.values():
                for name in out_names:
                    mtype = (
                        "vision_msgs/msg/Detection2DArray" if name == "detections" else IMAGE_TYPE
                    )
                    writer.add_topic(f"{ns}/{name}", mtype, qos="reliable")
                writer.add_topic(f"{ns}/label_info", "vision_msgs/msg/LabelInfo", qos="latched")
            for rec in reader.messages(copied | set(image_topics)):
                raise_if_interrupted()
                if rec.topic not in stats.namespaces:  # another input topic: copied through
                    if rec.error:
                        _skip(stats, log, f"{reader.path}: {rec.where()}: not copied: {rec.error}")
                        continue
                    writer.write(rec.topic, rec.log_time, rec.data)
                    continue
                try:
                    msg = deserialize(rec, reader.path)
                except BagMessageError as exc:
                    _skip(stats, log, str(exc))
                    bar.update(1)
                    continue
                if rec.topic in copied:
                    writer.write(rec.topic, rec.log_time, rec.data)
                try:
                    img = image_msg_to_array(msg)
                except ImageDecodeError as exc:
                    _skip(stats, log, f"{reader.path}: {rec.where()}: undecodable image: {exc}")
                    bar.update(1)
                    continue
                t0 = time.perf_counter()
                result = segmenter.segment(img)
                if rec.topic not in trackers:
                    trackers[rec.topic] = Tracker(tracking, taxonomy.label_divisor)
                try:
                    result = trackers[rec.topic].update(result, stamp_to_ns(msg.header.stamp))
                except ValueError as exc:  # a result the tracker refuses: as the node, skip it
                    _skip(stats, log, f"{reader.path}: {rec.where()}: {exc}")
                    bar.update(1)
                    continue
                stats.pipeline_ms.append((time.perf_counter() - t0) * 1e3)
                out = result_to_messages(
                    result,
                    msg.header,
                    taxonomy,
                    image_rgb=img,
                    want_overlay=overlay,
                    want_panoptic_rgb=panoptic_rgb,
                )
                ns = stats.namespaces[rec.topic]
                # a frame's outputs and its count go in together: an interrupt between two of its
                # topics would leave a partial frame and a summary that disagrees with the bag
                with signals_held():
                    if ns not in label_done:
                        writer.write(
                            f"{ns}/label_info",
                            rec.log_time,
                            serialize(label_info_msg(taxonomy, msg.header)),
                        )
                        label_done.add(ns)
                    for name in out_names:
                        writer.write(f"{ns}/{name}", rec.log_time, serialize(getattr(out, name)))
                    stats.frames += 1
                bar.update(1)
                if max_frames and stats.frames >= max_frames:
                    break
            for p in reader.problems:
                if p not in stats.problems:
                    stats.problems.append(p)
                    log(f"process-bag: error: {p}; the output holds everything before it")
            complete = True
        except KeyboardInterrupt:
            stats.interrupted = True
            log(
                f"process-bag: interrupted after {stats.frames} frames; {output_path} left as it was"
            )
        except Exception as exc:  # inference / conversion failure: keep what was done
            stats.error = f"{type(exc).__name__}: {exc}"
            stats.problems.append(stats.error)
            log(
                f"process-bag: error after {stats.frames} frames: {stats.error}; {output_path} left as it was"
            )
        finally:
            stats.seconds = time.perf_counter() - t_start
            bar.close()
            with signals_held():  # a second Ctrl-C must not cut the finalisation short
                try:
                    writer.close()
                except BagError:
                    complete = False
                    raise
                finally:
                    stats.counts = dict(writer.counts)
                    stats.copied = {t: writer.counts.get(t, 0) for t in sorted(copied)}
                    if complete:
                        stats.out = staged.commit()
                    else:
                        stats.out = staged.abandon(keep_partial=True)
                        if stats.out is not None:
                            log(f"process-bag: what was processed is in {stats.out}")
    return stats


def _skip(stats: ProcessStats, log: Callable[[str], None], message: str) -> None:
    stats.skipped += 1
    stats.problems.append(message)
    log(f"process-bag: skipping {message}")


def _failed(reason: str, message: str) -> int:
    """A run that could not start: the message on stderr, the summary line with ``error=reason``."""
    print(f"process-bag: error: {message}", file=sys.stderr)
    print(ProcessStats(None, error=f"{reason}: {message}").summary())
    return 2


def run(args) -> int:
    from panoptic_ros.bags.messages import BagError
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.writer import check_output_path
    from panoptic_ros.ros import params as P

    try:
        cfg = load_settings(args.params_file, args.model, args.backend)
        params = parse_params(args.param)
        # --param tracking*=...: the node's tracking parameters, not the model family's
        tracking = P.take_tracking_params(params, cfg)
    except Exception as exc:
        return _failed("params", str(exc))
    # check the input and the output path before paying for the model
    try:
        check_output_path([args.input], args.output, overwrite=args.overwrite)
        with BagReader(args.input) as reader:
            reader.camera_topics(args.topics)
    except BagError as exc:
        return _failed("input", str(exc))
    print(
        f"process-bag: loading model {cfg['model']!r} on backend {cfg['backend']!r}",
        file=sys.stderr,
    )
    try:
        segmenter = make_segmenter(cfg, params)
    except Exception as exc:
        return _failed("model", f"cannot load the model: {type(exc).__name__}: {exc}")
    try:
        raise_if_interrupted()
        stats = process_bag(
            args.input,
            args.output,
            segmenter=segmenter,
            topics=args.topics,
            storage=args.storage,
            overlay=args.overlay or False,
            panoptic_rgb=args.panoptic_rgb,
            copy_inputs=not args.no_inputs,
            max_frames=args.max_frames,
            overwrite=args.overwrite,
            tracking=tracking,
        )
    except BagError as exc:
        return _failed("input", str(exc))
    finally:
        segmenter.close()
    print(
        f"process-bag: {stats.frames} frames in {stats.seconds:.2f} s ({stats.fps:.2f} frames/s, pipeline mean "
        f"{stats.mean_ms:.1f} ms, p99 {stats.p99_ms:.1f} ms), {stats.skipped} skipped -> {stats.out} "
        f"({sum(stats.counts.values())} messages, {sum(stats.copied.values())} of them input messages copied)",
        file=sys.stderr,
    )
    print(stats.summary())
    if stats.interrupted:
        return 130
    return 1 if (stats.problems or stats.error) else 0
