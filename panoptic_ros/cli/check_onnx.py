"""``panoptic-ros check-onnx MODEL.onnx``: list the ONNX ops and flag those TensorRT cannot import."""

from __future__ import annotations

import argparse
import sys

HELP = "list the operators of an ONNX file (with counts) and flag those outside TensorRT's ONNX support"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "onnx", help="ONNX file, or a model directory/name (its exported ONNX is checked)"
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="batch of the export when MODEL is not an .onnx file"
    )


def _resolve(target: str, batch: int) -> str:
    if target.lower().endswith(".onnx"):
        return target
    from panoptic_ros.families.model_store import load_model_info, resolve_onnx

    return str(resolve_onnx(load_model_info(target), batch=batch))


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
    bad = len(report.unsupported) + len(report.problems)
    print(f"ops={report.n_ops} unsupported={bad}")
    return 0 if bad == 0 else 1
