"""``panoptic-ros build-engine MODEL``: build (or reuse) the cached TensorRT engine ahead of time."""

from __future__ import annotations

import argparse
import sys

HELP = "build the TensorRT engine for a model ahead of time and print its cache path (needs tensorrt + GPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model directory or name (default), or an .onnx file")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    parser.add_argument(
        "--height", type=int, default=None, help="network input height (must match the model)"
    )
    parser.add_argument(
        "--width", type=int, default=None, help="network input width (must match the model)"
    )
    parser.add_argument("--batch", type=int, default=1, help="static batch (cameras per inference)")
    parser.add_argument(
        "--workspace-mb", type=int, default=None, help="builder workspace limit in MiB"
    )
    parser.add_argument("--cache-dir", default=None, help="engine cache directory")
    parser.add_argument("--device", default="cuda:0")


def run(args: argparse.Namespace) -> int:
    from panoptic_ros.backends import BackendError, availability, create_backend

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    ok, why = availability()["tensorrt"]
    if not ok:
        log(
            f"build-engine: TensorRT engines need the 'tensorrt' Python package and an NVIDIA GPU ({why}); "
            "the onnxruntime backend runs the exported ONNX without them"
        )
        print("engine= built=0 error=1")
        return 2
    try:
        if args.model.lower().endswith(".onnx"):
            info = args.model
            if args.height or args.width:
                log(
                    "build-engine: --height/--width are taken from the ONNX file's static input shape"
                )
        else:  # a model directory of ours, or a folder with model.onnx (docs/models.md)
            from panoptic_ros.families.model_card import resolve_model

            src = resolve_model(args.model)
            info = src.info if src.info is not None else src.onnx_path
            size = tuple(getattr(info, "input_size", ()) or ())
            want = (
                args.height or (size[0] if size else None),
                args.width or (size[1] if size else None),
            )
            if size and tuple(want) != tuple(size):
                raise BackendError(
                    f"model {args.model!r} has network input {size[0]}x{size[1]}; --height/--width "
                    f"{want[0]}x{want[1]} would need a re-export at that size"
                )
        backend = create_backend(
            "tensorrt",
            info,
            batch=args.batch,
            device=args.device,
            precision=args.precision,
            cache_dir=args.cache_dir,
            workspace_mb=args.workspace_mb,
            logger=log,
        )
        with backend:
            path = backend.engine_path
            built = backend.build_reason is not None
    except (BackendError, ValueError) as exc:  # ModelError is a ValueError
        log(f"build-engine: {exc}")
        print("engine= built=0 error=1")
        return 2
    log(f"build-engine: engine {'built' if built else 'reused'}: {path}")
    print(f"engine={path} built={int(built)} precision={args.precision} batch={args.batch}")
    return 0
