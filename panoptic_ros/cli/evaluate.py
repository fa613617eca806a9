"""``panoptic-ros eval``: panoptic quality (PQ / SQ / RQ, panopticapi semantics, crowd included),
or video panoptic / tracking quality (STQ, AQ, SQ, ID switches) on synthetic sequences.

Four sources, exactly one per run:

* ``--sequences N``: run the model, then the tracker (core/tracking.py, the node's
  ``tracking*`` parameters from config/panoptic.yaml, ``--param tracking_max_age=...`` to
  change one), on N held-out synthetic videos (``synthetic_video.sequence_seeds``) and report
  STQ / AQ / SQ and CLEAR-MOT ID switches (evaluation/video.py), once with tracking off
  (per-frame ids: the baseline), with oracle ids (each predicted segment takes the id of the GT
  track it overlaps most: the ceiling the segmentation allows, ``evaluation.video.oracle_ids``)
  and with the tracker. Three stdout lines, ``tracking=off STQ=.. AQ=.. SQ=.. IDSW_PER_100=..
  IDSW=.. FRAG_PER_100=.. MOTA=.. GT_TRACK_FRAMES=..``, then ``tracking=oracle ...``, then
  ``tracking=on ...`` (last). The tracker gets each frame's stamp (30 fps: frame t at
  ``t * 33,333,333`` ns), so its motion model is per stamp time; ``--no-stamps`` gives it none
  (motion per processed frame, for comparison). ``--drop P`` drops each frame but the first
  with probability P (seeded by the sequence seed, so every run drops the same frames) before
  the model, as the node's latest-frame slots do under load: the dropped frames are neither
  segmented nor tracked nor scored, all three lines score only the frames the tracker saw
  (``GT_TRACK_FRAMES`` counts those);

* ``--synthetic N``: run the model on N generated validation scenes (seeds from
  ``synthetic.validation_seeds``, never used in training);
* ``--pred-json FILE [--pred DIR]`` with ``--gt-json FILE [--gt DIR]``: score a prediction
  set against ground truth, both in COCO panoptic format (no model involved);
* ``--images DIR`` with ``--gt-json FILE [--gt DIR]``: run the model on the images named by
  the ground truth's ``images[].file_name`` and score them. The ground truth's categories
  (any ids, e.g. COCO's sparse 1..200) are matched to the model's classes by name (case,
  spaces, ``_`` and ``-`` ignored); names that do not map are reported on stderr: such a
  category is still scored (all false negatives, as panopticapi would score a writer that
  cannot produce it), such a model class's pixels count as VOID. ``--write-pred DIR``
  also writes the predictions as COCO panoptic (``DIR/predictions.json`` + PNGs in
  ``DIR/predictions/``, the ground truth's category ids and image ids) for other tools.

Ground-truth ``iscrowd`` segments follow panopticapi (``evaluation/metrics.py``); a
prediction file's ``categories`` are ignored, its category ids are the ground truth's.

A PNG folder defaults to its JSON path without ``.json`` (as panopticapi assumes).
Progress and the per-class table go to stderr; the last stdout line is
``PQ=<float> SQ=<float> RQ=<float>`` (0..1, six decimals). Exit status 1 for unusable
inputs (missing files, malformed JSON, size mismatches), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.cli.params_option import add_param_argument

HELP = (
    "evaluate panoptic quality (PQ/SQ/RQ) on synthetic scenes or COCO panoptic data, or tracking "
    "(STQ/AQ, ID switches) on synthetic videos"
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class EvalError(Exception):
    """An input problem reported as ``panoptic-ros eval: error: ...`` with exit status 1."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("what to evaluate (exactly one)")
    src.add_argument(
        "--synthetic", type=int, metavar="N", help="run the model on N synthetic validation scenes"
    )
    src.add_argument(
        "--sequences",
        type=int,
        metavar="N",
        help="run model + tracker on N held-out synthetic video sequences (STQ, AQ, ID switches)",
    )
    src.add_argument(
        "--pred-json", type=Path, metavar="FILE", help="predictions, COCO panoptic JSON"
    )
    src.add_argument(
        "--images", type=Path, metavar="DIR", help="run the model on these images (needs --gt-json)"
    )
    p.add_argument(
        "--pred",
        type=Path,
        metavar="DIR",
        help="prediction PNG folder (default: --pred-json without .json)",
    )
    p.add_argument("--gt-json", type=Path, metavar="FILE", help="ground truth, COCO panoptic JSON")
    p.add_argument(
        "--gt",
        type=Path,
        metavar="DIR",
        help="ground-truth PNG folder (default: --gt-json without .json)",
    )
    p.add_argument(
        "--model",
        default="default",
        help="model directory, name or .onnx file (default: %(default)s)",
    )
    p.add_argument(
        "--backend", default="onnxruntime", help="inference backend (default: %(default)s)"
    )
    p.add_argument(
        "--precision",
        default="fp32",
        help="fp32 | fp16 (GPU backends) | int8 (the model's QDQ graph; default: %(default)s)",
    )
    p.add_argument(
        "--taxonomy",
        type=Path,
        metavar="FILE",
        help="class list (classes.yaml / metadata.json); default: the model's, or the ground truth's categories",
    )
    p.add_argument(
        "--height", type=int, default=240, help="synthetic scene height (default: %(default)s)"
    )
    p.add_argument(
        "--width", type=int, default=320, help="synthetic scene width (default: %(default)s)"
    )
    p.add_argument(
        "--frames",
        type=int,
        default=30,
        help="frames per sequence for --sequences (default: %(default)s)",
    )
    p.add_argument(
        "--drop",
        type=float,
        default=0.0,
        metavar="P",
        help="--sequences: drop each frame but the first with probability P in [0, 1) (seeded by "
        "the sequence seed) before the model; only the frames kept are tracked and scored "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-stamps",
        action="store_true",
        help="--sequences: give the tracker no stamps (motion per processed frame instead of per "
        "stamp time; a comparison for --drop)",
    )
    p.add_argument(
        "--seed-start",
        type=int,
        default=0,
        help="offset into the validation seeds for --synthetic, the sequence seeds for "
        "--sequences (default: 0)",
    )
    p.add_argument(
        "--report-json",
        type=Path,
        metavar="FILE",
        help="also write the full report (per class) as JSON",
    )
    p.add_argument(
        "--write-pred",
        type=Path,
        metavar="DIR",
        help="with --images: also write the predictions as COCO panoptic "
        "(DIR/predictions.json + DIR/predictions/*.png)",
    )
    p.add_argument(
        "--single-resize",
        action="store_true",
        help="downscale frames with one cv2 INTER_AREA call instead of the staged resize "
        "(core/preprocess.py), to measure the staged resize's PQ effect",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or table on stderr")
    add_param_argument(p)


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _progress(args: argparse.Namespace, it, total: int, desc: str, unit: str = "img"):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return it
    return tqdm(
        it,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=args.quiet,
        dynamic_ncols=True,
    )


# -- model ------------------------------------------------------------------------------------
def _open_segmenter(args: argparse.Namespace):
    """Build the model (``--model``, ``--backend``, ``--param``) with families.factory, the one
    place that knows how. Returns a Segmenter (``segment(rgb)``, ``taxonomy``, ``close()``)."""
    from panoptic_ros.cli.params_option import parse_params

    try:
        from panoptic_ros.families.factory import build_segmenter
    except ImportError as exc:
        raise EvalError(
            f"cannot load the inference pipeline ({exc}); evaluate COCO predictions with --pred-json"
        ) from exc
    try:
        return build_segmenter(
            args.model,
            args.backend,
            params=parse_params(args.param),
            precision=getattr(args, "precision", "fp32") or "fp32",
        )
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        raise EvalError(
            f"cannot open model {args.model!r} with backend {args.backend!r}: {exc}"
        ) from exc


def _segmenter_taxonomy(segmenter, args: argparse.Namespace):
    from panoptic_ros.core.taxonomy import Taxonomy

    if args.taxonomy is not None:
        return Taxonomy.load(args.taxonomy)
    return segmenter.taxonomy


def _close(segmenter) -> None:
    segmenter.close()


# -- sources: each yields (image id, pred map, ground truth annotation) ------------------
def _synthetic_pairs(args, segmenter, taxonomy) -> Iterator[tuple[Any, np.ndarray, Any]]:
    from panoptic_ros.core import synthetic
    from panoptic_ros.evaluation.coco_panoptic import PanopticAnnotation

    for seed in synthetic.validation_seeds(args.synthetic, start=args.seed_start):
        scene = synthetic.generate_scene(seed, args.height, args.width, taxonomy)
        yield seed, segmenter.segment(scene.image).panoptic, PanopticAnnotation(scene.panoptic)


def _coco_pairs(args, gt, pred) -> Iterator[tuple[Any, np.ndarray, Any]]:
    for image_id in gt.image_ids():
        yield image_id, pred.load(image_id), gt.load_annotation(image_id)


def _find_image(folder: Path, file_name: str) -> Path:
    """``folder/file_name`` (panopticapi's layout: ``images[].file_name`` in the image folder),
    else the same stem with any common image extension."""
    path = folder / file_name
    if path.is_file():
        return path
    stem = Path(file_name).with_suffix("")
    for ext in IMAGE_EXTENSIONS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    raise EvalError(f"image {file_name!r} not found in {folder}")


def _image_pairs(
    args, segmenter, gt, match, model_divisor: int, writer
) -> Iterator[tuple[Any, np.ndarray, Any]]:
    import cv2

    from panoptic_ros.evaluation.coco_panoptic import remap_classes

    for image_id in gt.image_ids():
        path = _find_image(args.images, gt.image_file_name(image_id))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EvalError(f"cannot decode image {path}")
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        g = gt.load_annotation(image_id)
        if rgb.shape[:2] != g.panoptic.shape:
            raise EvalError(
                f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} but its ground truth is "
                f"{g.panoptic.shape[1]}x{g.panoptic.shape[0]}"
            )
        pred = remap_classes(
            segmenter.segment(rgb).panoptic,
            match.class_to_category_class,
            model_divisor,
            gt.taxonomy.label_divisor,
        )
        if writer is not None:
            png = str(gt.annotations[image_id]["file_name"])
            image = gt.images.get(image_id) or {"id": image_id}
            writer.add(str(Path(png).with_suffix("")), pred, image=image)
        yield image_id, pred, g


# -- main ------------------------------------------------------------------------------------------
def _check_args(args: argparse.Namespace) -> str:
    modes = [m for m, on in (
        ("synthetic", args.synthetic is not None),
        ("sequences", getattr(args, "sequences", None) is not None),
        ("coco", args.pred_json is not None or args.pred is not None),
        ("images", args.images is not None),
    ) if on]  # fmt: skip
    if len(modes) != 1:
        raise EvalError(
            "give exactly one of --synthetic N, --sequences N, --pred-json FILE (with --gt-json) "
            "or --images DIR"
        )
    mode = modes[0]
    if mode in ("synthetic", "sequences"):
        if (args.synthetic if mode == "synthetic" else args.sequences) < 1:
            raise EvalError(f"--{mode} needs a positive number")
        if mode == "sequences" and args.frames < 1:
            raise EvalError("--frames needs a positive number")
        if mode == "sequences" and not 0.0 <= getattr(args, "drop", 0.0) < 1.0:
            raise EvalError(f"--drop must be in [0, 1), got {args.drop}")
        if args.height < 16 or args.width < 16:
            raise EvalError("--height/--width must be at least 16")
    else:
        if args.gt_json is None:
            raise EvalError(f"--{'pred-json' if mode == 'coco' else 'images'} needs --gt-json")
        if mode == "coco" and args.pred_json is None:
            raise EvalError("--pred needs --pred-json")
        if mode == "images" and not args.images.is_dir():
            raise EvalError(f"image folder not found: {args.images}")
    if args.write_pred is not None and mode != "images":
        raise EvalError("--write-pred needs --images (it writes the model's predictions)")
    return mode


def _open_predictions(args, gt):
    from panoptic_ros.evaluation.coco_panoptic import open_coco_panoptic

    pred = open_coco_panoptic(
        args.pred_json, args.pred, gt.taxonomy, categories=gt.categories, prediction=True
    )
    own = {int(c["id"]): c.get("name") for c in pred.json_categories if "id" in c}
    theirs = {int(c["id"]): c.get("name") for c in gt.categories if "id" in c}
    differ = sorted(i for i in own if i in theirs and own[i] != theirs[i])
    if differ:
        _warn(
            f"note: {args.pred_json} names category ids {differ[:5]} differently from the ground "
            "truth; as in panopticapi, its category ids are read as the ground truth's"
        )
    missing = [i for i in gt.image_ids() if i not in pred.annotations]
    if missing:
        raise EvalError(f"{args.pred_json}: no prediction for image_id(s) {missing[:5]}")
    extra = len(set(pred.annotations) - set(gt.annotations))
    if extra:
        _log(args, f"note: ignoring {extra} predicted image(s) without ground truth")
    return pred


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _evaluate(args: argparse.Namespace):
    """Score the chosen source; returns ``(PQReport, taxonomy, extra report fields)``."""
    from panoptic_ros.core.taxonomy import Taxonomy
    from panoptic_ros.evaluation.coco_panoptic import (
        CocoPanopticWriter,
        match_categories,
        open_coco_panoptic,
        score_image,
    )
    from panoptic_ros.evaluation.metrics import PanopticQuality

    mode = _check_args(args)
    segmenter = writer = None
    extra: dict[str, Any] = {}
    try:
        if mode == "synthetic":
            segmenter = _open_segmenter(args)
            taxonomy = _segmenter_taxonomy(segmenter, args)
            pairs, total, desc = (
                _synthetic_pairs(args, segmenter, taxonomy),
                args.synthetic,
                "eval synthetic",
            )
        elif mode == "coco":
            taxonomy = Taxonomy.load(args.taxonomy) if args.taxonomy is not None else None
            gt = open_coco_panoptic(args.gt_json, args.gt, taxonomy)
            taxonomy = gt.taxonomy
            pairs, desc = _coco_pairs(args, gt, _open_predictions(args, gt)), "eval coco"
            total = len(gt)
        else:
            segmenter = _open_segmenter(args)
            model_tax = _segmenter_taxonomy(segmenter, args)
            gt = open_coco_panoptic(args.gt_json, args.gt, label_divisor=model_tax.label_divisor)
            taxonomy = gt.taxonomy
            match = match_categories(gt.categories, model_tax)
            extra = {
                "unmatched_categories": list(match.unmatched_categories),
                "unmatched_classes": list(match.unmatched_classes),
            }
            if match.n_matched == 0:
                raise EvalError(
                    f"no model class name matches a category of {args.gt_json}: model classes "
                    f"{', '.join(model_tax.names())}; categories {', '.join(taxonomy.names())}"
                )
            if match.describe():
                _warn(f"name mapping ({args.gt_json} vs model {args.model}):\n{match.describe()}")
            if args.write_pred is not None:
                writer = CocoPanopticWriter(
                    args.write_pred / "predictions.json",
                    args.write_pred / "predictions",
                    taxonomy,
                    categories=gt.categories,
                )
            pairs = _image_pairs(args, segmenter, gt, match, model_tax.label_divisor, writer)
            desc, total = "eval images", len(gt)
        if total == 0:
            raise EvalError(f"{args.gt_json}: no annotations to evaluate")

        metric = PanopticQuality(taxonomy)
        for image_id, pred_map, gt_ann in _progress(args, pairs, total, desc):
            score_image(metric, pred_map, gt_ann, where=image_id)
        if writer is not None:
            writer.close()
            _log(args, f"predictions written: {args.write_pred / 'predictions.json'}")
        return metric.compute(), taxonomy, extra
    finally:
        if segmenter is not None:
            _close(segmenter)


def report_to_dict(report) -> dict[str, Any]:
    keys = (
        "pq",
        "sq",
        "rq",
        "pq_thing",
        "sq_thing",
        "rq_thing",
        "pq_stuff",
        "sq_stuff",
        "rq_stuff",
    )
    out: dict[str, Any] = {k: getattr(report, k) for k in keys}
    out["n_images"] = report.n_images
    out["per_class"] = {
        name: dict(zip(("pq", "sq", "rq", "tp", "fp", "fn"), vals))
        for name, vals in report.per_class.items()
    }
    return out


def run(args: argparse.Namespace) -> int:
    from panoptic_ros.core import preprocess
    from panoptic_ros.core.taxonomy import TaxonomyError
    from panoptic_ros.evaluation.coco_panoptic import CocoPanopticError
    from panoptic_ros.evaluation.metrics import format_report

    staged = preprocess.STAGED
    preprocess.STAGED = staged and not getattr(args, "single_resize", False)
    try:
        if getattr(args, "sequences", None) is not None:
            return _run_sequences(args)
        report, taxonomy, extra = _evaluate(args)
    except (EvalError, CocoPanopticError, TaxonomyError, ValueError, OSError) as exc:
        print(f"panoptic-ros eval: error: {exc}", file=sys.stderr)
        return 1
    finally:  # in-process callers (tests) keep the default
        preprocess.STAGED = staged
    _log(args, format_report(report, taxonomy))
    if args.report_json is not None:
        try:
            args.report_json.parent.mkdir(parents=True, exist_ok=True)
            args.report_json.write_text(json.dumps({**report_to_dict(report), **extra}, indent=2))
        except OSError as exc:
            print(
                f"panoptic-ros eval: error: cannot write {args.report_json}: {exc}", file=sys.stderr
            )
            return 1
    print(report.summary_line(), flush=True)
    return 0


# -- video: --sequences N ------------------------------------------------------------------------
def _tracker_config(args: argparse.Namespace):
    """The node's tracking parameters (config/panoptic.yaml), changed by ``--param tracking*=``;
    the other ``--param`` names stay for the model. Returns (TrackerConfig, model params)."""
    from panoptic_ros.cli.params_option import parse_params
    from panoptic_ros.ros import params as P

    params = parse_params(args.param)
    try:
        return P.take_tracking_params(params, P.defaults()), params
    except ValueError as exc:
        raise EvalError(str(exc)) from None


def video_summary_line(tracking: str, stq, ids) -> str:
    """One stdout line: ``tracking=on|off STQ=.. AQ=.. SQ=.. IDSW_PER_100=.. ...``."""
    return (
        f"tracking={tracking} STQ={stq.stq:.6f} AQ={stq.aq:.6f} SQ={stq.sq:.6f} "
        f"IDSW_PER_100={ids.id_switches_per_100:.4f} IDSW={ids.id_switches} "
        f"FRAG_PER_100={ids.fragmentations_per_100:.4f} MOTA={ids.mota:.6f} "
        f"GT_TRACK_FRAMES={ids.gt_track_frames}"
    )


#: the synthetic sequences' frame period (30 fps), for the stamps the tracker gets
FRAME_PERIOD_NS = 33_333_333


def kept_frames(seed: int, n_frames: int, drop: float) -> list[int]:
    """Indices of the frames a node would process when it drops each frame but the first with
    probability ``drop``: a pure function of ``seed`` (the sequence seed), and for one seed the
    frames kept at a higher ``drop`` are a subset of those kept at a lower one (one uniform draw
    per frame, compared with ``drop``)."""
    u = np.random.default_rng((int(seed), 0xD509)).random(n_frames)
    return [t for t in range(n_frames) if t == 0 or u[t] >= drop]


def _run_sequences(args: argparse.Namespace) -> int:
    """Model + tracker on held-out synthetic videos; see the module docstring."""
    import dataclasses
    import time

    from panoptic_ros.core import synthetic_video
    from panoptic_ros.core.tracking import Tracker
    from panoptic_ros.evaluation.video import IdSwitches, SegmentationTrackingQuality, oracle_ids

    _check_args(args)
    tracking, model_params = _tracker_config(args)
    args.param = [f"{k}={v}" for k, v in model_params.items()]
    if not tracking.enabled:
        _warn("note: tracking is off in the parameters; both lines show per-frame ids")
    segmenter = _open_segmenter(args)
    try:
        taxonomy = _segmenter_taxonomy(segmenter, args)
        off = (SegmentationTrackingQuality(taxonomy), IdSwitches(taxonomy))
        on = (SegmentationTrackingQuality(taxonomy), IdSwitches(taxonomy))
        oracle = (SegmentationTrackingQuality(taxonomy), IdSwitches(taxonomy))
        track_ms: list[float] = []
        seeds = synthetic_video.sequence_seeds(args.sequences, start=args.seed_start)
        for seed in _progress(args, seeds, len(seeds), "eval sequences", unit="seq"):
            seq = synthetic_video.generate_sequence(
                seed, args.frames, args.height, args.width, taxonomy
            )
            tracker = Tracker(tracking, taxonomy.label_divisor)
            for t in kept_frames(seed, args.frames, args.drop):
                frame = seq.frames[t]
                result = segmenter.segment(frame.image)
                t0 = time.perf_counter()
                stamp = None if args.no_stamps else t * FRAME_PERIOD_NS
                tracked = tracker.update(result, stamp_ns=stamp)
                track_ms.append((time.perf_counter() - t0) * 1e3)
                best = oracle_ids(frame.panoptic, result.panoptic, taxonomy)
                for (stq, ids), pred in (
                    (off, result.panoptic),
                    (oracle, best),
                    (on, tracked.panoptic),
                ):
                    stq.update(frame.panoptic, pred, seed)
                    ids.update(frame.panoptic, pred, seed)
    finally:
        _close(segmenter)
    reports = {
        name: (stq.compute(), ids.compute())
        for name, (stq, ids) in (("off", off), ("oracle", oracle), ("on", on))
    }
    s_on = reports["on"][0]
    _log(
        args,
        f"{s_on.n_sequences} sequences x {args.frames} frames ({args.height}x{args.width}), "
        f"{s_on.n_gt_tracks} GT tracks, {reports['on'][1].gt_track_frames} GT track-frames; "
        f"model {args.model}; tracker {tracking}; tracking {float(np.mean(track_ms)):.3f} ms/frame"
        f"; {len(track_ms)} frames tracked and scored (--drop {args.drop}), "
        f"{'no stamps (per-frame motion)' if args.no_stamps else 'stamped at 30 fps'}",
    )
    if args.report_json is not None:
        out = {
            name: {
                **dataclasses.asdict(stq),
                **dataclasses.asdict(ids),
                "id_switches_per_100": ids.id_switches_per_100,
                "fragmentations_per_100": ids.fragmentations_per_100,
                "mota": ids.mota,
            }
            for name, (stq, ids) in reports.items()
        }
        out["tracker"] = dataclasses.asdict(tracking)
        out["seeds"] = seeds
        out["drop"] = args.drop
        out["stamps"] = not args.no_stamps
        out["frames_scored"] = len(track_ms)
        out["track_ms_mean"] = float(np.mean(track_ms))
        try:
            args.report_json.parent.mkdir(parents=True, exist_ok=True)
            args.report_json.write_text(json.dumps(out, indent=2))
        except OSError as exc:
            raise EvalError(f"cannot write {args.report_json}: {exc}") from exc
    for name in ("off", "oracle", "on"):
        print(video_summary_line(name, *reports[name]), flush=True)
    return 0
