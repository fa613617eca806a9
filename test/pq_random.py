"""Random panoptic ground-truth / prediction pairs for the PQ tests (not a test module).

Small maps make IoU ties (exactly 0.5) and the 50 %-on-void rule come up often.
"""

from __future__ import annotations

import numpy as np

from panoptic_ros.core.taxonomy import Taxonomy


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random rectangle or ellipse mask."""
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    bh, bw = int(rng.integers(1, max(2, h // 2))), int(rng.integers(1, max(2, w // 2)))
    m = np.zeros((h, w), bool)
    if rng.random() < 0.5:
        m[y0 : y0 + bh, x0 : x0 + bw] = True
    else:
        yy, xx = np.ogrid[:h, :w]
        m = ((yy - y0) / max(bh, 1)) ** 2 + ((xx - x0) / max(bw, 1)) ** 2 <= 1.0
    return m


def random_gt(rng: np.random.Generator, taxonomy: Taxonomy, h: int, w: int) -> np.ndarray:
    div = taxonomy.label_divisor
    stuff, things = list(taxonomy.stuff_ids), list(taxonomy.thing_ids)
    gt = np.empty((h, w), np.int32)
    # stuff bands; sometimes the same stuff class twice with a second "instance"
    cuts = np.sort(
        rng.choice(np.arange(1, h), size=min(h - 1, int(rng.integers(1, 4))), replace=False)
    )
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, h])):
        cls = int(rng.choice(stuff))
        inst = int(rng.integers(0, 2)) if rng.random() < 0.2 else 0
        gt[a:b] = cls * div + inst
    for inst in range(1, int(rng.integers(0, 7)) + 1):
        cls = int(rng.choice(things))
        gt[_blob(rng, h, w)] = cls * div + (0 if rng.random() < 0.1 else inst)
    for _ in range(int(rng.integers(0, 3))):  # void regions
        gt[_blob(rng, h, w)] = -1
    if rng.random() < 0.3:  # sprinkled void
        gt[rng.random((h, w)) < 0.05] = -1
    return gt


def perturb(rng: np.random.Generator, taxonomy: Taxonomy, gt: np.ndarray) -> np.ndarray:
    """A prediction derived from gt: shifted / swapped / grown / dropped / split segments, noise."""
    div = taxonomy.label_divisor
    h, w = gt.shape
    pred = gt.copy()
    # fill gt void with something (or keep void) so predictions land on void too
    void = gt < 0
    if rng.random() < 0.7:
        pred[void] = int(rng.choice(taxonomy.stuff_ids)) * div
    ids = [int(v) for v in np.unique(gt) if v >= 0]
    for sid in ids:
        m = gt == sid
        op = rng.integers(0, 7)
        if op == 0:  # shift
            dy, dx = int(rng.integers(-3, 4)), int(rng.integers(-3, 4))
            pred[np.roll(m, (dy, dx), axis=(0, 1))] = sid
        elif op == 1:  # class swap, keep instance
            cls = int(rng.integers(0, taxonomy.num_classes))
            pred[m] = cls * div + sid % div
        elif op == 2:  # grow into neighbours
            grown = m.copy()
            grown[1:] |= m[:-1]
            grown[:, 1:] |= m[:, :-1]
            pred[grown] = sid
        elif op == 3:  # drop to another id
            pred[m] = int(rng.choice(ids))
        elif op == 4:  # split in half with a new instance id
            ys = np.nonzero(m)[0]
            if ys.size:
                half = m & (np.arange(h)[:, None] >= np.median(ys))
                pred[half] = (sid // div) * div + int(rng.integers(0, div))
        elif op == 5:  # predicted void
            pred[m & (rng.random((h, w)) < 0.5)] = -1
        # op 6: keep
    for _ in range(int(rng.integers(0, 3))):  # spurious segments
        cls = int(rng.integers(0, taxonomy.num_classes))
        pred[_blob(rng, h, w)] = cls * div + int(rng.integers(0, 50))
    if rng.random() < 0.2:  # pixel noise
        noise = rng.random((h, w)) < 0.05
        pred[noise] = int(rng.integers(0, taxonomy.num_classes)) * div + 999
    return pred


def random_pairs(seed: int, n: int, taxonomy: Taxonomy) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(4, 40)), int(rng.integers(4, 48))
        gt = random_gt(rng, taxonomy, h, w)
        out.append((perturb(rng, taxonomy, gt), gt))
    return out
