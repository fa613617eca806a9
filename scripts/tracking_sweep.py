#!/usr/bin/env python3
"""Tracker configurations side by side on eval's held-out synthetic sequences (docs/performance.md
"Tracking"): AQ / STQ / ID switches per 100 GT track-frames, with the default model's segmentation
("model") and with ground-truth segmentation whose ids are shuffled per frame ("gt"), which
separates association errors from segmentation errors.

    .venv/bin/python scripts/tracking_sweep.py --sequences 20 \\
        --configs '[{}, {"similarity": "mask", "min_iou": 0.2}, {"assignment": "hungarian"}]'

Each config is a dict of core.tracking.TrackerConfig fields over its defaults. The model runs once
per frame; every config then tracks the same results. ``--drop P`` keeps only the frames
``eval --sequences --drop P`` keeps (same seeded choice) and scores those; ``--stamps on,off``
runs each config with the 30 fps stamps (motion per stamp time) and without (per frame).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def gt_result(panoptic: np.ndarray, div: int, rng: np.random.Generator):
    """The ground truth as a segmenter would give it: ids 1..N in a shuffled order."""
    from panoptic_ros.core.postprocess import instance_records
    from panoptic_ros.core.types import PanopticResult

    gt_ids = np.where(panoptic >= 0, panoptic % div, 0)
    ids = [int(i) for i in np.unique(gt_ids) if i > 0]
    rng.shuffle(ids)
    lut = np.zeros(int(gt_ids.max()) + 1, np.int64)
    classes = np.zeros(len(ids) + 1, np.int64)
    for k, i in enumerate(ids, 1):
        lut[i] = k
        classes[k] = int(panoptic[gt_ids == i][0] // div)
    inst = lut[gt_ids].astype(np.uint16)
    recs = instance_records(inst, classes, np.ones(len(ids) + 1, np.float32))
    pan = np.where(inst > 0, (panoptic // div) * div + inst, panoptic).astype(np.int32)
    return PanopticResult(np.zeros(inst.shape, np.uint8), inst, pan, recs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=20)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--model", default="default")
    ap.add_argument("--configs", default="[{}]", help="JSON list of TrackerConfig overrides")
    ap.add_argument("--segmentation", default="model,gt", help="model, gt or both (comma list)")
    ap.add_argument("--drop", type=float, default=0.0, help="as eval --sequences --drop P")
    ap.add_argument("--stamps", default="on", help="on, off or both (comma list)")
    args = ap.parse_args()

    from panoptic_ros.cli.evaluate import FRAME_PERIOD_NS, kept_frames
    from panoptic_ros.cli.process_bag import load_settings, make_segmenter
    from panoptic_ros.core import synthetic_video
    from panoptic_ros.core.tracking import Tracker, TrackerConfig
    from panoptic_ros.evaluation.video import IdSwitches, SegmentationTrackingQuality

    configs = [TrackerConfig(**c) for c in json.loads(args.configs)]
    kinds = args.segmentation.split(",")
    seg = make_segmenter(load_settings(None, args.model, "onnxruntime"))
    tax = seg.taxonomy
    data = []  # (seed, gt panoptics, {kind: results})
    try:
        for seed in synthetic_video.sequence_seeds(args.sequences):
            sq = synthetic_video.generate_sequence(seed, args.frames, args.height, args.width, tax)
            gts = [f.panoptic for f in sq.frames]
            res = {}
            if "model" in kinds:
                res["model"] = [seg.segment(f.image) for f in sq.frames]
            if "gt" in kinds:
                rng = np.random.default_rng(seed)
                res["gt"] = [gt_result(p, tax.label_divisor, rng) for p in gts]
            data.append((seed, gts, res))
    finally:
        seg.close()
    for kind, cfg, stamps in [
        (k, c, st) for k in kinds for c in configs for st in args.stamps.split(",")
    ]:
        stq, ids, ms = SegmentationTrackingQuality(tax), IdSwitches(tax), []
        for seed, gts, res in data:
            tracker = Tracker(cfg, tax.label_divisor)
            for t in kept_frames(seed, len(gts), args.drop):
                gt, r = gts[t], res[kind][t]
                t0 = time.perf_counter()
                out = tracker.update(r, t * FRAME_PERIOD_NS if stamps == "on" else None)
                ms.append((time.perf_counter() - t0) * 1e3)
                stq.update(gt, out.panoptic, seed)
                ids.update(gt, out.panoptic, seed)
        a, b = stq.compute(), ids.compute()
        print(
            f"segmentation={kind} drop={args.drop} stamps={stamps} AQ={a.aq:.4f} STQ={a.stq:.4f} "
            f"IDSW_PER_100={b.id_switches_per_100:.2f} track_ms={np.mean(ms):.3f} {cfg}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
