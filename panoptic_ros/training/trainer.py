"""Training on procedural scenes (CPU), Panoptic-DeepLab losses, validation PQ.

Targets per scene (``make_targets``): semantic ids (255 ignored), a Gaussian centre heatmap
(sigma ``CENTER_SIGMA`` px around each instance's centre of mass, max over instances) and the
(dy, dx) offset from each thing pixel to its instance centre.

Losses: semantic cross-entropy with hard-pixel mining (mean of the top ``HARD_FRACTION`` pixel
losses; pixels of small instances weighted x3), centre MSE (weight 200), offset L1 over thing
pixels (weight 0.01) -- the Panoptic-DeepLab recipe scaled to this model.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from panoptic_ros.core import synthetic
from panoptic_ros.core.taxonomy import Taxonomy

CENTER_SIGMA = 4.0
HARD_FRACTION = 0.25
SMALL_INSTANCE_AREA = 600
W_CENTER = 200.0
W_OFFSET = 0.01


def make_targets(semantic: np.ndarray, instance: np.ndarray, sigma: float = CENTER_SIGMA):
    """semantic (H,W) uint8, instance (H,W) uint16 -> (sem int64 (H,W), heat float32 (1,H,W),
    offset float32 (2,H,W), offset_weight float32 (H,W), pixel_weight float32 (H,W))."""
    H, W = semantic.shape
    inst = instance.astype(np.int64)
    n = int(inst.max()) + 1
    heat = np.zeros((1, H, W), np.float32)
    offset = np.zeros((2, H, W), np.float32)
    pw = np.ones((H, W), np.float32)
    if n > 1:
        area = np.bincount(inst.ravel(), minlength=n).astype(np.float64)
        ys = np.arange(H, dtype=np.float64)
        xs = np.arange(W, dtype=np.float64)
        sy = np.bincount(inst.ravel(), weights=np.repeat(ys, W), minlength=n)
        sx = np.bincount(inst.ravel(), weights=np.tile(xs, H), minlength=n)
        valid = area > 0
        valid[0] = False
        cy = np.where(valid, sy / np.maximum(area, 1), 0).astype(np.float32)
        cx = np.where(valid, sx / np.maximum(area, 1), 0).astype(np.float32)
        idx = np.flatnonzero(valid)
        if idx.size:
            gy = np.exp(-((ys[None, :] - cy[idx, None]) ** 2) / (2 * sigma**2)).astype(
                np.float32
            )  # (N,H)
            gx = np.exp(-((xs[None, :] - cx[idx, None]) ** 2) / (2 * sigma**2)).astype(
                np.float32
            )  # (N,W)
            heat[0] = np.max(gy[:, :, None] * gx[:, None, :], axis=0)
        m = inst > 0
        offset[0] = np.where(m, cy[inst] - ys[:, None].astype(np.float32), 0)
        offset[1] = np.where(m, cx[inst] - xs[None, :].astype(np.float32), 0)
        small = (area < SMALL_INSTANCE_AREA) & valid
        pw[small[inst]] = 3.0
    sem = semantic.astype(np.int64)
    return sem, heat, offset, (inst > 0).astype(np.float32), pw


def training_sample(index: int, base_seed: int, size: tuple[int, int], taxonomy: Taxonomy):
    """One augmented training scene at the network size (deterministic in index and base_seed)."""
    seed = synthetic.training_seed(index, base_seed)
    rng = np.random.default_rng(seed + 7_777_777)
    h, w = size
    if rng.random() < 0.5:
        gh, gw = h, w
    else:  # another camera size / aspect, stretched to the network size like the pipeline does
        gh = int(h * rng.choice([1.0, 1.25, 1.5]))
        gh, gw = synthetic.random_camera_size(rng, gh)
    sc = synthetic.generate_scene(seed, gh, gw, taxonomy)
    img, sem, ins = sc.image, sc.semantic, sc.instance
    if (gh, gw) != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if gh >= h else cv2.INTER_LINEAR)
        sem = cv2.resize(sem, (w, h), interpolation=cv2.INTER_NEAREST)
        ins = cv2.resize(ins, (w, h), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        img, sem, ins = img[:, ::-1], sem[:, ::-1], ins[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(sem), np.ascontiguousarray(ins)


def _batches(start: int, batch: int, base_seed: int, size, taxonomy, crop=None) -> Iterator[tuple]:
    import torch

    i = start
    rng = np.random.default_rng(base_seed + start + 12345)
    while True:
        imgs, sems, heats, offs, ows, pws = [], [], [], [], [], []
        for _ in range(batch):
            img, sem, ins = training_sample(i, base_seed, size, taxonomy)
            i += 1
            s, h, o, ow, pw = make_targets(
                sem, ins
            )  # targets from the full scene (centres may lie outside a crop)
            if crop is not None:
                ch, cw = crop
                y = int(rng.integers(0, size[0] - ch + 1))
                x = int(rng.integers(0, size[1] - cw + 1))
                img, s, h, o, ow, pw = (
                    img[y : y + ch, x : x + cw],
                    s[y : y + ch, x : x + cw],
                    h[:, y : y + ch, x : x + cw],
                    o[:, y : y + ch, x : x + cw],
                    ow[y : y + ch, x : x + cw],
                    pw[y : y + ch, x : x + cw],
                )
            imgs.append(img.transpose(2, 0, 1))
            sems.append(s)
            heats.append(h)
            offs.append(o)
            ows.append(ow)
            pws.append(pw)
        yield tuple(torch.from_numpy(np.stack(a)) for a in (imgs, sems, heats, offs, ows, pws))


class _BatchStream:
    """Batches produced by a torch DataLoader worker process (overlaps scene generation with training)."""

    def __init__(
        self, batch: int, base_seed: int, size, taxonomy, workers: int = 1, crop=None
    ) -> None:
        import torch
        from torch.utils.data import DataLoader, IterableDataset

        class DS(IterableDataset):
            def __iter__(self_inner):
                info = torch.utils.data.get_worker_info()
                wid, nw = (info.id, info.num_workers) if info else (0, 1)
                gen = _batches(
                    wid * 100_000_000 // max(nw, 1) if nw > 1 else 0,
                    batch,
                    base_seed,
                    size,
                    taxonomy,
                    crop,
                )
                for b in gen:
                    yield tuple(t.float() if t.dtype == torch.uint8 else t for t in b)

        self.loader = DataLoader(
            DS(),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
        )

    def __iter__(self):
        return iter(self.loader)


def losses(out, targets, w_center: float = W_CENTER, w_offset: float = W_OFFSET):
    import torch
    import torch.nn.functional as F

    logits, heat, offset = out
    _, sem, theat, toff, ow, pw = targets
    ce = F.cross_entropy(logits, sem, ignore_index=255, reduction="none") * pw
    flat = ce.reshape(-1)
    k = max(1, int(flat.numel() * HARD_FRACTION))
    l_sem = torch.topk(flat, k, sorted=False).values.mean()
    l_ctr = F.mse_loss(heat, theat)
    l_off = (torch.abs(offset - toff).sum(1) * ow).sum() / ow.sum().clamp(min=1.0)
    total = l_sem + w_center * l_ctr + w_offset * l_off
    return total, {"sem": l_sem.item(), "ctr": l_ctr.item(), "off": l_off.item()}


@dataclass
class TrainConfig:
    out_dir: Path
    steps: int = 0  # 0: run by time
    minutes: float = 30.0
    batch: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    input_size: tuple[int, int] = (240, 320)
    top_k: int = 32
    val_scenes: int = 200
    log_path: Path | None = None
    threads: int = 2
    workers: int = 1
    init: Path | None = None
    checkpoint_minutes: float = 5.0
    warmup: int = 100
    w_center: float = W_CENTER
    w_offset: float = W_OFFSET
    crop: tuple[int, int] | None = (
        None  # random training crop (h, w) of each scene; None = full frames
    )


def evaluate(
    module,
    taxonomy: Taxonomy,
    n: int,
    size: tuple[int, int],
    progress: bool = True,
    center_threshold: float = 0.1,
):
    """PQ report of the torch export module on ``n`` validation scenes at ``size`` (batch 1)."""
    import torch

    from panoptic_ros.core.postprocess import PostprocessConfig, build_result
    from panoptic_ros.core.preprocess import to_nchw
    from panoptic_ros.evaluation.metrics import PanopticQuality

    pq = PanopticQuality(taxonomy)
    cfg = PostprocessConfig(center_threshold=center_threshold)
    thr = torch.tensor([center_threshold], dtype=torch.float32)
    seeds = synthetic.validation_seeds(n)
    it = seeds
    if progress:
        from tqdm import tqdm

        it = tqdm(seeds, desc="validate", file=sys.stderr, leave=False)
    with torch.no_grad():
        for seed in it:
            sc = synthetic.generate_scene(seed, size[0], size[1], taxonomy)
            s, i, c = module(torch.from_numpy(to_nchw([sc.image])), thr)
            r = build_result(
                s[0].numpy(), i[0].numpy(), c[0].numpy(), sc.image.shape[:2], taxonomy, cfg
            )
            pq.update(r.panoptic, sc.panoptic)
    return pq.compute()


def train(
    cfg: TrainConfig, taxonomy: Taxonomy | None = None, progress: bool = True
) -> dict[str, Any]:
    import torch

    from panoptic_ros.families.model_store import (
        DEFAULT_NMS_KERNEL,
        load_model_info,
        load_state_dict,
        save_model,
    )
    from panoptic_ros.families.panoptic_export import build_export_module
    from panoptic_ros.families.panoptic_net import (
        ARCH_DEFAULTS,
        DEFAULT_MEAN,
        DEFAULT_STD,
        build_net,
    )

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tax = taxonomy or Taxonomy.default()
    arch = dict(ARCH_DEFAULTS)
    net = build_net(tax.num_classes, arch)
    prev_phases: list[dict[str, Any]] = []
    if cfg.init is not None:
        info = load_model_info(cfg.init)
        net.load_state_dict(load_state_dict(info.weights_path))
        prev = dict(info.metadata.get("train", {}))
        prev_phases = list(prev.pop("phases", [])) or [prev]
    net.train()
    decay, no_decay = [], []
    for n_, p in net.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    stream = _BatchStream(cfg.batch, cfg.seed, cfg.input_size, tax, cfg.workers, cfg.crop)
    log = open(cfg.log_path, "a") if cfg.log_path else None
    budget = cfg.minutes * 60.0
    t0 = time.time()
    last_ckpt = t0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.steps or int(budget),
            unit="step" if cfg.steps else "s",
            file=sys.stderr,
            desc="train",
            dynamic_ncols=True,
        )
    step = 0
    ema: dict[str, float] = {}

    def save(extra: dict[str, Any]) -> None:
        save_model(
            cfg.out_dir,
            net,
            tax,
            input_size=cfg.input_size,
            top_k=cfg.top_k,
            arch=arch,
            mean=DEFAULT_MEAN,
            std=DEFAULT_STD,
            extra=extra,
        )

    for batch in stream:
        elapsed = time.time() - t0
        frac = step / cfg.steps if cfg.steps else elapsed / budget
        if frac >= 1.0:
            break
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (1 - frac) ** 0.9
        for g in opt.param_groups:
            g["lr"] = lr
        out = net(batch[0])
        total, parts = losses(out, batch, cfg.w_center, cfg.w_offset)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        step += 1
        parts["loss"] = total.item()
        for k, v in parts.items():
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        if log and (step % 10 == 0 or step == 1):
            log.write(
                json.dumps(
                    {"step": step, "elapsed_s": round(time.time() - t0, 1), "lr": lr, **parts}
                )
                + "\n"
            )
            log.flush()
        if bar is not None:
            bar.set_postfix({k: f"{v:.3g}" for k, v in ema.items()}, refresh=False)
            if cfg.steps:
                bar.update(1)
            else:
                bar.n = min(int(time.time() - t0), int(budget))
                bar.refresh()
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            net.eval()
            save({"train": {"seed": cfg.seed, "steps": step, "batch": cfg.batch, "partial": True}})
            net.train()
            last_ckpt = time.time()
    if bar is not None:
        bar.close()
    train_s = time.time() - t0
    net.eval()
    train_meta = {
        "seed": cfg.seed,
        "steps": step,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "seconds": round(train_s, 1),
        "images": step * cfg.batch,
        "input_size": list(cfg.input_size),
        "center_sigma": CENTER_SIGMA,
        "init": str(cfg.init) if cfg.init else None,
        "crop": list(cfg.crop) if cfg.crop else None,
        "losses": {
            "semantic": f"CE top-{HARD_FRACTION:.0%} hard pixels, small instances x3",
            "center": f"MSE x{cfg.w_center:g}",
            "offset": f"L1 x{cfg.w_offset:g} on thing pixels",
        },
    }
    if prev_phases:
        phases = prev_phases + [dict(train_meta)]
        train_meta["phases"] = phases
        train_meta["total_steps"] = sum(int(p.get("steps", 0)) for p in phases)
        train_meta["total_seconds"] = round(sum(float(p.get("seconds", 0)) for p in phases), 1)
    save({"train": train_meta})
    report = None
    if cfg.val_scenes > 0:
        module = build_export_module(
            net,
            tax.is_thing_lut()[:-1].tolist(),
            cfg.input_size[0],
            cfg.input_size[1],
            cfg.top_k,
            DEFAULT_NMS_KERNEL,
        )
        report = evaluate(module, tax, cfg.val_scenes, cfg.input_size, progress)
        ev = {
            "scenes": cfg.val_scenes,
            "seed_start": synthetic.VALIDATION_SEED_START,
            "size": list(cfg.input_size),
            "pq": round(report.pq, 4),
            "sq": round(report.sq, 4),
            "rq": round(report.rq, 4),
            "pq_thing": round(report.pq_thing, 4),
            "pq_stuff": round(report.pq_stuff, 4),
            "per_class_pq": {k: round(v[0], 4) for k, v in report.per_class.items()},
        }
        save({"train": train_meta, "eval": ev})
    if log:
        log.close()
    return {"steps": step, "seconds": train_s, "report": report}
