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


# -- COCO panoptic sets written directly (numpy + cv2 + json), independent of the package ---------
#: sparse COCO category ids, things and stuff mixed (names as in COCO panoptic)
COCO_CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 7, "name": "train", "isthing": 1},
    {"id": 24, "name": "zebra", "isthing": 1},
    {"id": 45, "name": "spoon", "isthing": 1},
    {"id": 125, "name": "gravel", "isthing": 0},
    {"id": 149, "name": "railroad", "isthing": 0},
    {"id": 184, "name": "tree-merged", "isthing": 0},
    {"id": 199, "name": "wall-other-merged", "isthing": 0},
]


def write_id_png(path, ids: np.ndarray) -> None:
    """(H, W) segment ids -> RGB PNG with id = R + 256 G + 256^2 B (written here, not by the package)."""
    import cv2

    ids = np.asarray(ids, np.int64)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def _segments_info(label: np.ndarray, segs: list[dict], seg_ids: np.ndarray) -> list[dict]:
    """segments_info for the segments present in ``label`` (index map, -1 void), areas from pixels."""
    out = []
    for k, seg in enumerate(segs):
        ys, xs = np.nonzero(label == k)
        if ys.size == 0:
            continue
        out.append({
            "id": int(seg_ids[k]), "category_id": seg["category_id"], "area": int(ys.size),
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
            "iscrowd": int(seg.get("iscrowd", 0)),
        })  # fmt: skip
    return out


def _random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct large RGB-encodable segment ids (all three channels used)."""
    return rng.choice(np.arange(1 << 16, 1 << 24), size=n, replace=False)


def _random_coco_image(rng: np.random.Generator, h: int, w: int, crowd_rate: float):
    """(gt index map, gt segments, pred index map, pred segments); index -1 = void."""
    things = [c["id"] for c in COCO_CATEGORIES if c["isthing"]]
    stuff = [c["id"] for c in COCO_CATEGORIES if not c["isthing"]]
    gt = np.full((h, w), -1, np.int64)
    gsegs: list[dict] = []
    cuts = np.sort(
        rng.choice(np.arange(1, h), size=min(h - 1, int(rng.integers(1, 4))), replace=False)
    )
    for a, b in zip([0, *cuts], [*cuts, h]):
        gt[a:b] = len(gsegs)
        gsegs.append({"category_id": int(rng.choice(stuff))})
    for _ in range(int(rng.integers(0, 8))):
        gt[_blob(rng, h, w)] = len(gsegs)
        gsegs.append(
            {"category_id": int(rng.choice(things)), "iscrowd": int(rng.random() < crowd_rate)}
        )
    for _ in range(int(rng.integers(0, 3))):
        gt[_blob(rng, h, w)] = -1
    if rng.random() < 0.3:
        gt[rng.random((h, w)) < 0.05] = -1

    pred = np.full((h, w), -1, np.int64)
    psegs: list[dict] = []
    if rng.random() < 0.6:  # gt void predicted as some stuff
        pred[gt < 0] = len(psegs)
        psegs.append({"category_id": int(rng.choice(stuff))})
    all_cats = things + stuff
    for k, seg in enumerate(gsegs):
        m = gt == k
        op = int(rng.integers(0, 7))
        cat = seg["category_id"]
        if op == 1:  # another class
            cat = int(rng.choice(all_cats))
        elif op == 2:  # shifted
            m = np.roll(m, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        elif op == 3:  # grown
            g = m.copy()
            g[1:] |= m[:-1]
            g[:, 1:] |= m[:, :-1]
            m = g
        elif op == 4:  # missed (left to whatever was below)
            continue
        elif op == 5:  # split: lower half a separate segment of the same class
            ys = np.nonzero(m)[0]
            if ys.size:
                lower = m & (np.arange(h)[:, None] >= np.median(ys))
                pred[m & ~lower] = len(psegs)
                psegs.append({"category_id": cat})
                m = lower
        pred[m] = len(psegs)
        psegs.append({"category_id": cat})
    for k, seg in enumerate(gsegs):  # predictions over crowd regions: own class or another
        if seg.get("iscrowd") and rng.random() < 0.7:
            m = (gt == k) & _blob(rng, h, w) if rng.random() < 0.5 else (gt == k) | _blob(rng, h, w)
            pred[m] = len(psegs)
            psegs.append(
                {
                    "category_id": seg["category_id"]
                    if rng.random() < 0.6
                    else int(rng.choice(all_cats))
                }
            )
    for _ in range(int(rng.integers(0, 3))):  # spurious
        pred[_blob(rng, h, w)] = len(psegs)
        psegs.append({"category_id": int(rng.choice(all_cats))})
    return gt, gsegs, pred, psegs


def write_random_coco_sets(
    folder, seed: int, n: int, crowd_rate: float = 0.1, empty_pred: int | None = 0
):
    """Write gt.json + gt/ and pred.json + pred/ under ``folder`` (COCO panoptic, from scratch).

    Sparse category ids (:data:`COCO_CATEGORIES`), large RGB ids, ``crowd_rate`` of the
    thing segments ``iscrowd: 1`` (sometimes two crowd segments of a class: panopticapi
    keeps the last), void pixels; image ``empty_pred`` has an empty prediction (PNG all 0,
    no segments). Returns the number of crowd segments written.
    """
    import json
    from pathlib import Path

    folder = Path(folder)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    (folder / "pred").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, gt_anns, pred_anns, n_crowd = [], [], [], 0
    for i in range(n):
        h, w = int(rng.integers(6, 40)), int(rng.integers(6, 48))
        gt, gsegs, pred, psegs = _random_coco_image(rng, h, w, crowd_rate)
        if i == empty_pred:
            pred[:] = -1
            psegs = []
        image_id = int(1000 + 37 * i)  # not 1..n
        name = f"{image_id:012d}"
        g_ids, p_ids = _random_ids(rng, len(gsegs)), _random_ids(rng, max(len(psegs), 1))
        write_id_png(folder / "gt" / f"{name}.png", np.where(gt < 0, 0, g_ids[np.maximum(gt, 0)]))
        write_id_png(
            folder / "pred" / f"{name}.png", np.where(pred < 0, 0, p_ids[np.maximum(pred, 0)])
        )
        g_info = _segments_info(gt, gsegs, g_ids)
        n_crowd += sum(s["iscrowd"] for s in g_info)
        images.append({"id": image_id, "file_name": f"{name}.jpg", "width": w, "height": h})
        gt_anns.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": g_info})
        pred_anns.append({"image_id": image_id, "file_name": f"{name}.png",
                          "segments_info": _segments_info(pred, psegs, p_ids)})  # fmt: skip
    cats = [dict(c, supercategory=c["name"]) for c in COCO_CATEGORIES]
    (folder / "gt.json").write_text(
        json.dumps({"images": images, "annotations": gt_anns, "categories": cats})
    )
    (folder / "pred.json").write_text(
        json.dumps({"images": images, "annotations": pred_anns, "categories": cats})
    )
    return n_crowd
