"""``panoptic-ros check-onnx MODEL``: list the ONNX ops and flag those TensorRT cannot import, open
the graph in ONNX Runtime (a load failure is reported, not hidden behind unsupported=0) and name
the model family recognised (docs/models.md).

Last stdout line: ``ops=N unsupported=M ort=ok|fail family=NAME|none``; exit 0 when all is well,
1 when an op is unsupported, ONNX Runtime cannot load the graph or no family recognises it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from panoptic_ros.families.base import ModelFamily

HELP = "list the operators of an ONNX file (with counts) and flag those outside TensorRT's ONNX support"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "onnx", help="ONNX file, or a model directory/name (its exported ONNX is checked)"
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="batch of the export when MODEL is not an .onnx file"
    )


def _resolve(target: str, batch: int) -> str:
    """The ONNX file of ``target``: itself, a folder's model.onnx, or a weight directory's export."""
    if target.lower().endswith(".onnx"):
        return target
    from panoptic_ros.families.model_card import resolve_model
    from panoptic_ros.families.model_store import resolve_onnx

    src = resolve_model(target)
    if src.onnx_path is not None:
        return str(src.onnx_path)
    return str(resolve_onnx(src.info, batch=batch))


def _family(target: str) -> tuple[ModelFamily | None, str]:
    """(the recognised family or None, one line on the family and taxonomy, or why none)."""
    from panoptic_ros.families.factory import make_family
    from panoptic_ros.families.model_card import resolve_model

    try:
        fam = make_family(resolve_model(target))
    except Exception as exc:  # ModelError listing every family's violations, TaxonomyError, ...
        return None, f"no family: {exc}"
    tax = fam.taxonomy
    return fam, (
        f"family {fam.name}: {tax.num_classes} classes ({len(tax.thing_ids)} things), "
        f"e.g. {', '.join(tax.names()[:5])}"
    )


def run(args: argparse.Namespace) -> int:
    from panoptic_ros.backends.onnx_ops import analyze, format_report

    try:
        path = _resolve(args.onnx, args.batch)
        report = analyze(path)
    except (ValueError, OSError) as exc:
        print(f"check-onnx: {exc}", file=sys.stderr)
        print("ops=0 unsupported=0 error=1")
        return 2
    print(format_report(report), file=sys.stderr)
    for o in report.unsupported:
        print(
            f"check-onnx: unsupported by TensorRT: {o.op} x{o.count}: {'; '.join(o.notes)}",
            file=sys.stderr,
        )
    for p in report.problems:
        print(f"check-onnx: {p}", file=sys.stderr)
    from panoptic_ros.backends.onnx_ops import ort_load_error

    fam, about = _family(args.onnx)
    family = fam.name if fam is not None else "none"
    ort_err = ort_load_error(path)
    ort_state = "ok"
    if ort_err:
        print(f"check-onnx: ONNX Runtime cannot load {path}: {ort_err}", file=sys.stderr)
        ort_state = "fail"
        # the node and every command open what the family makes runnable (families/factory.py)
        fixed = fam.runnable_onnx(Path(path)) if fam is not None else Path(path)
        if str(fixed) != str(path) and ort_load_error(fixed) is None:
            print(
                f"check-onnx: loads after the fix-up the node applies for {family} ({fixed})",
                file=sys.stderr,
            )
            ort_err, ort_state = None, "ok-fixed"
    print(f"check-onnx: {about}", file=sys.stderr)
    bad = len(report.unsupported) + len(report.problems)
    print(f"ops={report.n_ops} unsupported={bad} ort={ort_state} family={family}")
    return 0 if bad == 0 and not ort_err and family != "none" else 1
