"""``panoptic-ros eval``: panoptic quality (PQ / SQ / RQ, panopticapi semantics).

Three sources, exactly one per run:

* ``--synthetic N``: run the model on N generated validation scenes (seeds from
  ``synthetic.validation_seeds``, never used in training);
* ``--pred-json FILE [--pred DIR]`` with ``--gt-json FILE [--gt DIR]``: score a prediction
  set against ground truth, both in COCO panoptic format (no model involved);
* ``--images DIR`` with ``--gt-json FILE [--gt DIR]``: run the model on the images named by
  the ground truth's ``images[].file_name`` and score them.

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

HELP = "evaluate panoptic quality (PQ/SQ/RQ) on synthetic scenes or COCO panoptic data"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class EvalError(Exception):
    """An input problem reported as ``panoptic-ros eval: error: ...`` with exit status 1."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("what to evaluate (exactly one)")
    src.add_argument(
        "--synthetic", type=int, metavar="N", help="run the model on N synthetic validation scenes"
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
        "--seed-start",
        type=int,
        default=0,
        help="offset into the validation seeds for --synthetic (default: 0)",
    )
    p.add_argument(
        "--report-json",
        type=Path,
        metavar="FILE",
        help="also write the full report (per class) as JSON",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or table on stderr")
    add_param_argument(p)


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _progress(args: argparse.Namespace, it, total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return it
    return tqdm(
        it,
        total=total,
        desc=desc,
        unit="img",
        file=sys.stderr,
        disable=args.quiet,
        dynamic_ncols=True,
    )


# -- model ------------------------------------------------------------------------------------
def _open_segmenter(args: argparse.Namespace):
    from panoptic_ros.cli.params_option import parse_params

    try:
        from panoptic_ros.families.factory import build_segmenter
    except ImportError as exc:
        raise EvalError(
            f"cannot load the inference pipeline ({exc}); evaluate COCO predictions with --pred-json"
        ) from exc
    try:
        return build_segmenter(args.model, args.backend, params=parse_params(args.param))
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


# -- sources: each yields (pred, gt) pairs ------------------------------------------------------------
def _synthetic_pairs(args, segmenter, taxonomy) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from panoptic_ros.training import synthetic

    for seed in synthetic.validation_seeds(args.synthetic, start=args.seed_start):
        scene = synthetic.generate_scene(seed, args.height, args.width, taxonomy)
        yield segmenter.segment(scene.image).panoptic, scene.panoptic


def _coco_pairs(args, gt, pred) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for image_id in gt.image_ids():
        g = gt.load(image_id)
        p = pred.load(image_id)
        if p.shape != g.shape:
            raise EvalError(
                f"image {image_id!r}: prediction PNG is {p.shape[1]}x{p.shape[0]} but ground truth is "
                f"{g.shape[1]}x{g.shape[0]}"
            )
        yield p, g


def _find_image(folder: Path, file_name: str) -> Path:
    path = folder / file_name
    if path.is_file():
        return path
    stem = Path(file_name).stem
    for ext in IMAGE_EXTENSIONS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    raise EvalError(f"image {file_name!r} not found in {folder}")


def _image_pairs(args, segmenter, gt) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import cv2

    for image_id in gt.image_ids():
        path = _find_image(args.images, gt.image_file_name(image_id))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EvalError(f"cannot decode image {path}")
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        g = gt.load(image_id)
        if rgb.shape[:2] != g.shape:
            raise EvalError(
                f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} but its ground truth is {g.shape[1]}x{g.shape[0]}"
            )
        yield segmenter.segment(rgb).panoptic, g


# -- main ------------------------------------------------------------------------------------------
def _check_args(args: argparse.Namespace) -> str:
    modes = [m for m, on in (
        ("synthetic", args.synthetic is not None),
        ("coco", args.pred_json is not None or args.pred is not None),
        ("images", args.images is not None),
    ) if on]  # fmt: skip
    if len(modes) != 1:
        raise EvalError(
            "give exactly one of --synthetic N, --pred-json FILE (with --gt-json) or --images DIR"
        )
    mode = modes[0]
    if mode == "synthetic":
        if args.synthetic < 1:
            raise EvalError("--synthetic needs a positive number of scenes")
        if args.height < 8 or args.width < 8:
            raise EvalError("--height/--width must be at least 8")
    else:
        if args.gt_json is None:
            raise EvalError(f"--{'pred-json' if mode == 'coco' else 'images'} needs --gt-json")
        if mode == "coco" and args.pred_json is None:
            raise EvalError("--pred needs --pred-json")
        if mode == "images" and not args.images.is_dir():
            raise EvalError(f"image folder not found: {args.images}")
    return mode


def _evaluate(args: argparse.Namespace):
    from panoptic_ros.core.taxonomy import Taxonomy
    from panoptic_ros.evaluation.coco_panoptic import open_coco_panoptic
    from panoptic_ros.evaluation.metrics import PanopticQuality

    mode = _check_args(args)
    segmenter = None
    try:
        if mode == "synthetic":
            segmenter = _open_segmenter(args)
            taxonomy = _segmenter_taxonomy(segmenter, args)
            pairs, total, desc = (
                _synthetic_pairs(args, segmenter, taxonomy),
                args.synthetic,
                "eval synthetic",
            )
        else:
            taxonomy = Taxonomy.load(args.taxonomy) if args.taxonomy is not None else None
            if mode == "images":
                segmenter = _open_segmenter(args)
                taxonomy = taxonomy or _segmenter_taxonomy(segmenter, args)
            gt = open_coco_panoptic(args.gt_json, args.gt, taxonomy)
            taxonomy = gt.taxonomy
            if mode == "coco":
                pred = open_coco_panoptic(
                    args.pred_json, args.pred, taxonomy, categories=gt.categories
                )
                missing = [i for i in gt.image_ids() if i not in pred.annotations]
                if missing:
                    raise EvalError(
                        f"{args.pred_json}: no prediction for image_id(s) {missing[:5]}"
                    )
                extra = len(set(pred.annotations) - set(gt.annotations))
                if extra:
                    _log(args, f"note: ignoring {extra} predicted image(s) without ground truth")
                pairs, desc = _coco_pairs(args, gt, pred), "eval coco"
            else:
                pairs, desc = _image_pairs(args, segmenter, gt), "eval images"
            total = len(gt)
            if total == 0:
                raise EvalError(f"{args.gt_json}: no annotations to evaluate")

        metric = PanopticQuality(taxonomy)
        for pred_map, gt_map in _progress(args, pairs, total, desc):
            metric.update(pred_map, gt_map)
        return metric.compute(), taxonomy
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
    from panoptic_ros.core.taxonomy import TaxonomyError
    from panoptic_ros.evaluation.coco_panoptic import CocoPanopticError
    from panoptic_ros.evaluation.metrics import format_report

    try:
        report, taxonomy = _evaluate(args)
    except (EvalError, CocoPanopticError, TaxonomyError, ValueError, OSError) as exc:
        print(f"panoptic-ros eval: error: {exc}", file=sys.stderr)
        return 1
    _log(args, format_report(report, taxonomy))
    if args.report_json is not None:
        try:
            args.report_json.parent.mkdir(parents=True, exist_ok=True)
            args.report_json.write_text(json.dumps(report_to_dict(report), indent=2))
        except OSError as exc:
            print(
                f"panoptic-ros eval: error: cannot write {args.report_json}: {exc}", file=sys.stderr
            )
            return 1
    print(report.summary_line(), flush=True)
    return 0
