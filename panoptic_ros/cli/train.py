"""``panoptic-ros train``: train the default architecture on generated scenes (CPU)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train the panoptic network on procedural synthetic scenes (CPU) and write a model directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("models/default"),
        help="model directory to write (default: %(default)s)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--minutes", type=float, default=30.0, help="training time budget (default: %(default)s)"
    )
    g.add_argument(
        "--steps", type=int, default=0, help="train for this many steps instead of a time budget"
    )
    p.add_argument("--batch", type=int, default=8, help="scenes per step (default: %(default)s)")
    p.add_argument(
        "--lr",
        type=float,
        default=3e-3,
        help="peak learning rate, AdamW, poly decay (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed base (default: %(default)s)")
    p.add_argument(
        "--height", type=int, default=240, help="network input height (default: %(default)s)"
    )
    p.add_argument(
        "--width", type=int, default=320, help="network input width (default: %(default)s)"
    )
    p.add_argument(
        "--top-k", type=int, default=32, help="centres kept per image (default: %(default)s)"
    )
    p.add_argument(
        "--val-scenes",
        type=int,
        default=200,
        help="validation scenes for the final PQ (default: %(default)s)",
    )
    p.add_argument(
        "--log",
        type=Path,
        default=None,
        help="JSON-lines loss log (default: OUT/train_log.jsonl is NOT written; give a path)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="scene-generator worker processes (default: %(default)s)",
    )
    p.add_argument(
        "--init", type=Path, default=None, help="start from this model directory's weights"
    )
    p.add_argument(
        "--crop",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="train on random H x W crops of each scene (faster steps); default full frames",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=30,
        help="linear learning-rate warm-up steps (default: %(default)s)",
    )
    p.add_argument(
        "--center-weight",
        type=float,
        default=200.0,
        help="centre MSE loss weight (default: %(default)s)",
    )
    p.add_argument(
        "--offset-weight",
        type=float,
        default=0.01,
        help="offset L1 loss weight (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from panoptic_ros.training.trainer import TrainConfig, train

    for name in ("batch", "height", "width", "top_k"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.height < 16 or args.width < 16:
        print("error: --height/--width must be >= 16", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        out_dir=args.out,
        steps=args.steps,
        minutes=args.minutes,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        input_size=(args.height, args.width),
        top_k=args.top_k,
        val_scenes=args.val_scenes,
        log_path=args.log,
        threads=args.threads,
        workers=args.workers,
        init=args.init,
        warmup=args.warmup,
        w_center=args.center_weight,
        w_offset=args.offset_weight,
        crop=tuple(args.crop) if args.crop else None,
    )
    res = train(cfg, progress=not args.no_progress)
    rep = res["report"]
    print(
        f"trained {res['steps']} steps in {res['seconds'] / 60:.1f} min -> {args.out}",
        file=sys.stderr,
    )
    line = f"out={args.out} steps={res['steps']} train_s={res['seconds']:.0f}"
    if rep is not None:
        line += (
            f" PQ={rep.pq:.4f} SQ={rep.sq:.4f} RQ={rep.rq:.4f} PQ_thing={rep.pq_thing:.4f}"
            f" PQ_stuff={rep.pq_stuff:.4f}"
        )
    print(line)
    return 0
