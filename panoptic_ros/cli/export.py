"""``panoptic-ros export``: torch weights -> ONNX (static shapes) + ONNX Runtime parity check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export a model directory to ONNX (static shapes, opset >= 17) and check ONNX Runtime vs torch parity"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="default", help="model directory or 'default' (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("panoptic.onnx"),
        help="output ONNX file (default: %(default)s)",
    )
    p.add_argument(
        "--height", type=int, default=None, help="network input height (default: the model's)"
    )
    p.add_argument(
        "--width", type=int, default=None, help="network input width (default: the model's)"
    )
    p.add_argument("--batch", type=int, default=1, help="static batch size (default: %(default)s)")
    p.add_argument(
        "--top-k", type=int, default=None, help="centres kept per image (default: the model's)"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default: %(default)s)")
    p.add_argument(
        "--raw",
        action="store_true",
        help="also write the raw graph (logits, heatmap, offsets) as OUT_raw.onnx",
    )
    p.add_argument(
        "--parity",
        type=int,
        default=8,
        metavar="N",
        help="compare ONNX Runtime with torch on N fresh scenes (0: skip; default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed offset of the parity scenes (default: %(default)s)",
    )
    p.add_argument(
        "--ship",
        action="store_true",
        help="write the graph into the model directory under the name the model store uses "
        "without torch (instead of --out; model's own size and top_k, opset 17, parity required)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="write the model's INT8 (QDQ) graph, quantized with its recipe (metadata.json "
        "'int8', families/quantize.py), instead of the fp32 export; with --ship into the model "
        "directory under the name precision=int8 looks for",
    )
    p.add_argument(
        "--center-threshold",
        type=float,
        default=0.1,
        help="threshold for the parity run (default: %(default)s)",
    )


def _export_int8(args: argparse.Namespace) -> int:
    """``--int8``: quantize (the fp32 graph comes from the shipped file or the export cache)."""
    from panoptic_ros.families import quantize as q
    from panoptic_ros.families.model_store import ModelError, load_model_info

    try:
        info = load_model_info(args.model)
        recipe = q.model_recipe(info)
        out = info.directory / q.int8_onnx_name(info, args.batch) if args.ship else args.out
        print(f"quantizing {info.directory} (recipe {recipe.to_dict()}) -> {out}", file=sys.stderr)
        q.quantize_model(info, out, batch=args.batch, recipe=recipe)
    except (ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = q.check_qdq_rules(out)
    for problem in problems:
        print(f"TensorRT explicit-quantization rule broken: {problem}", file=sys.stderr)
    if args.ship and not problems:
        h, w = info.input_size
        for p in info.directory.glob(f"model-int8-{h}x{w}-b{args.batch}-*.onnx"):
            if p != out:
                p.unlink()
    print(
        f"onnx={out} precision=int8 batch={args.batch} bytes={out.stat().st_size} "
        f"tensorrt_rules={'ok' if not problems else len(problems)}"
    )
    return 3 if problems else 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "int8", False):
        return _export_int8(args)
    import numpy as np

    from panoptic_ros.backends.onnx_ops import load_model, op_counts
    from panoptic_ros.core import synthetic
    from panoptic_ros.families.model_store import (
        ModelError,
        load_model_info,
        load_torch_model,
        shipped_onnx_name,
    )
    from panoptic_ros.families.panoptic_export import DEFAULT_OPSET, check_parity, export_onnx

    try:
        info = load_model_info(args.model)
        net = load_torch_model(info, raw=True)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    h = args.height or info.input_size[0]
    w = args.width or info.input_size[1]
    k = args.top_k or info.top_k
    if h < 16 or w < 16 or args.batch < 1 or k < 1 or args.opset < 17:
        print(
            "error: need --height/--width >= 16, --batch >= 1, --top-k >= 1, --opset >= 17",
            file=sys.stderr,
        )
        return 2
    stale: list[Path] = []
    if args.ship:
        if (h, w, k, args.opset) != (
            *info.input_size,
            info.top_k,
            DEFAULT_OPSET,
        ) or args.parity < 1:
            print(
                "error: --ship exports at the model's own size and top_k, opset 17, with --parity >= 1",
                file=sys.stderr,
            )
            return 2
        args.out = info.directory / shipped_onnx_name(info, args.batch)
        stale = [
            p for p in info.directory.glob(f"model-{h}x{w}-b{args.batch}-*.onnx") if p != args.out
        ]
    is_thing = info.taxonomy.is_thing_lut()[:-1].tolist()
    print(
        f"exporting {info.directory} at {h}x{w} batch {args.batch} top_k {k} opset {args.opset} -> {args.out}",
        file=sys.stderr,
    )
    export_onnx(
        net,
        is_thing,
        args.out,
        height=h,
        width=w,
        batch=args.batch,
        top_k=k,
        nms_kernel=info.nms_kernel,
        opset=args.opset,
    )
    raw_out = args.out.with_name(args.out.stem + "_raw.onnx")
    need_raw = args.raw or args.parity > 0
    if need_raw:
        export_onnx(net, is_thing, raw_out, height=h, width=w, batch=1, raw=True, opset=args.opset)
    ops = {op: n for (_, op), n in sorted(op_counts(load_model(args.out)).items())}
    print("ONNX ops: " + ", ".join(f"{o} x{n}" for o, n in ops.items()), file=sys.stderr)
    line = f"onnx={args.out} height={h} width={w} batch={args.batch} top_k={k} opset={args.opset} ops={len(ops)}"
    if args.parity > 0:
        post_b1 = args.out
        if args.batch != 1:
            post_b1 = args.out.with_name(args.out.stem + "_b1.onnx")
            export_onnx(
                net,
                is_thing,
                post_b1,
                height=h,
                width=w,
                batch=1,
                top_k=k,
                nms_kernel=info.nms_kernel,
                opset=args.opset,
            )
        seeds = synthetic.validation_seeds(args.parity, start=5_000_000 + args.seed)
        imgs = [synthetic.generate_scene(s, h, w, info.taxonomy).image for s in seeds]
        rep = check_parity(
            net,
            is_thing,
            imgs,
            post_onnx=post_b1,
            raw_onnx=raw_out,
            top_k=k,
            nms_kernel=info.nms_kernel,
            center_threshold=args.center_threshold,
        )
        print(
            f"parity on {rep.n_images} scenes: max|d logits|={rep.max_abs_diff_logits:.3g} "
            f"max|d heatmap|={rep.max_abs_diff_heatmap:.3g} max|d offset|={rep.max_abs_diff_offset:.3g} "
            f"semantic identical={rep.semantic_identical:.5%} panoptic identical={rep.panoptic_identical:.5%}",
            file=sys.stderr,
        )
        line += (
            f" parity_scenes={rep.n_images} max_abs_logits={rep.max_abs_diff_logits:.3g}"
            f" max_abs_heatmap={rep.max_abs_diff_heatmap:.3g} max_abs_offset={rep.max_abs_diff_offset:.3g}"
            f" panoptic_identical={rep.panoptic_identical:.6f}"
        )
        if post_b1 != args.out:
            post_b1.unlink(missing_ok=True)
        if not args.raw:
            raw_out.unlink(missing_ok=True)
        print(line)
        ok = rep.panoptic_identical >= 0.999
        if args.ship:
            for p in stale if ok else [args.out]:
                p.unlink(missing_ok=True)
            if ok:
                args.out.chmod(0o644)  # shipped with the package, not a private cache entry
        return 0 if ok else 3
    del np
    print(line)
    return 0
