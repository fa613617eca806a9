"""Test models for the model families (imported like ``pq_random``), built at test time.

* ``pdl_raw_export``: the project's own network (PanopticNet, real torch) exported with
  ``families.panoptic_export.export_onnx(raw=True)``, i.e. what ``panoptic-ros export --raw`` writes: the
  default model's weights, or a random init with any class count.
* ``raw_heads_onnx``: a tiny graph written with onnx.helper that has Panoptic-DeepLab's exact raw
  head signature (1x1 convolutions, sigmoid heatmap, offsets): for the taxonomy-source tests with
  80 and 133 classes, where exporting a network per class count would only cost time.
* ``detectron2_panoptic``: an independent torch reimplementation of detectron2's Panoptic-DeepLab
  post-processing rules (projects/Panoptic-DeepLab post_processing.py, as documented there), the
  reference the host decode is compared with (detectron2 itself does not install here).
* ``COCO_80``: the 80 Ultralytics / COCO detection class names.
* ``pdl19``: module-scoped fixture (``from family_models import pdl19``): a random-init 19-class
  ``pdl_raw_export`` with the Cityscapes names in ``classes.yaml`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

COCO_80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip


def pdl_raw_export(path: Path, num_classes: int | None = None, size=(96, 128), seed: int = 0):
    """The project's raw export: default weights (num_classes None) or a random init."""
    import torch

    from panoptic_ros.families.model_store import load_model_info, load_torch_model
    from panoptic_ros.families.panoptic_export import export_onnx
    from panoptic_ros.families.panoptic_net import build_net

    if num_classes is None:
        info = load_model_info("default")
        net = load_torch_model(info, raw=True)
        is_thing = info.taxonomy.is_thing_lut()[:-1].tolist()
        size = info.input_size
    else:
        torch.manual_seed(seed)
        net = build_net(num_classes).eval()
        with torch.no_grad():  # heads reading single feature channels: classes, centres and
            # offsets that vary over the image (random dense heads on ReLU features give one class)
            g = torch.Generator().manual_seed(seed)
            heads = (
                (net.sem_head, num_classes, 3.0),
                (net.center_head, 1, 8.0),
                (net.offset_head, 2, 1.0),
            )
            for head, n, gain in heads:
                conv = head[-1]
                conv.weight.zero_()
                conv.bias.zero_()
                cin = conv.weight.shape[1]
                for o in range(n):
                    a, b = torch.randint(0, cin, (2,), generator=g).tolist()
                    conv.weight[o, a] += gain
                    conv.weight[o, b] -= gain
        is_thing = [False] * num_classes
    return export_onnx(net, is_thing, path, height=size[0], width=size[1], raw=True)


@pytest.fixture(scope="module")
def pdl19(tmp_path_factory) -> Path:
    """A random-init 19-class Panoptic-DeepLab network exported raw (seed 3), with the Cityscapes
    preset's names in ``classes.yaml`` (the names a model of another class count brings)."""
    from panoptic_ros.core.taxonomy_sources import load_preset

    d = tmp_path_factory.mktemp("pdl19")
    p = pdl_raw_export(d / "pdl19.onnx", num_classes=19, seed=3)
    names = [c.name for c in load_preset("cityscapes.yaml")[0].classes]
    (d / "classes.yaml").write_text(yaml.safe_dump({"names": names}))
    return p


def raw_heads_onnx(
    path: Path, num_classes: int, size=(48, 64), seed: int = 0, metadata: dict | None = None
) -> Path:
    """Panoptic-DeepLab's raw head signature in a tiny graph (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    h, w = size
    inits = [
        numpy_helper.from_array(
            rng.normal(0, 0.05, (num_classes, 3, 1, 1)).astype(np.float32), "ws"
        ),
        numpy_helper.from_array(rng.normal(0, 0.02, (1, 3, 1, 1)).astype(np.float32), "wc"),
        numpy_helper.from_array(rng.normal(0, 0.05, (2, 3, 1, 1)).astype(np.float32), "wo"),
        numpy_helper.from_array(np.array([-2.0], np.float32), "bc"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "ws"], ["semantic_logits"]),
        helper.make_node("Conv", ["image", "wc", "bc"], ["c0"]),
        helper.make_node("Sigmoid", ["c0"], ["center_heatmap"]),
        helper.make_node("Conv", ["image", "wo"], ["center_offset"]),
    ]
    graph = helper.make_graph(
        nodes,
        "raw_heads",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [
            helper.make_tensor_value_info(
                "semantic_logits", TensorProto.FLOAT, [1, num_classes, h, w]
            ),
            helper.make_tensor_value_info("center_heatmap", TensorProto.FLOAT, [1, 1, h, w]),
            helper.make_tensor_value_info("center_offset", TensorProto.FLOAT, [1, 2, h, w]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def coco_categories_json(path: Path) -> Path:
    """COCO panoptic categories (the shipped preset written back as COCO ``categories``)."""
    import yaml

    from panoptic_ros.core.package_files import config_file

    data = yaml.safe_load(config_file("taxonomies/coco_panoptic.yaml").read_text())
    cats = [
        {"id": c["coco_id"], "name": c["name"], "isthing": int(c["is_thing"]), "color": c["color"]}
        for c in data["classes"]
    ]
    path.write_text(json.dumps({"categories": cats}))
    return path


def detectron2_panoptic(
    logits: np.ndarray,
    heat: np.ndarray,
    offset: np.ndarray,
    thing_ids: set[int],
    *,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int = 200,
    stuff_area: int = 0,
    label_divisor: int = 1000,
) -> np.ndarray:
    """Reference: detectron2's Panoptic-DeepLab rules in torch, on one image's raw heads
    (logits [C,h,w], heat [1,h,w], offset [2,h,w]) -> panoptic [h,w] (class * divisor + id, -1 void)."""
    import torch
    import torch.nn.functional as F

    sem = torch.from_numpy(logits).argmax(0, keepdim=True)  # [1,h,w]
    ctr = torch.from_numpy(heat).clone()
    off = torch.from_numpy(offset)
    # centres: threshold to -1, keep max-pool peaks, top-k (strictly above the k-th, clamped at 0)
    ctr = torch.where(ctr > threshold, ctr, torch.full_like(ctr, -1.0))
    pooled = F.max_pool2d(ctr[None], nms_kernel, stride=1, padding=(nms_kernel - 1) // 2)[0]
    ctr[ctr != pooled] = -1
    ctr = ctr[0]
    if top_k:
        kth = torch.topk(ctr.flatten(), top_k).values[-1].clamp(min=0)
        centres = torch.nonzero(ctr > kth)
    else:
        centres = torch.nonzero(ctr > 0)
    thing = torch.zeros_like(sem)
    for t in thing_ids:
        thing[sem == t] = 1
    if len(centres) == 0:
        ins = torch.zeros_like(sem)
    else:
        h, w = off.shape[1:]
        yy, xx = torch.meshgrid(
            torch.arange(h, dtype=off.dtype), torch.arange(w, dtype=off.dtype), indexing="ij"
        )
        loc = (torch.stack([yy, xx]) + off).flatten(1).T[None]  # [1,HW,2]
        dist = torch.norm(centres[:, None, :].to(off.dtype) - loc, dim=-1)  # [K,HW]
        ins = (dist.argmin(0).reshape(1, h, w) + 1) * thing
    pan = torch.full_like(sem, -1)
    is_thing = (ins > 0) & (thing > 0)
    counter: dict[int, int] = {}
    for i in torch.unique(ins):
        if i == 0:
            continue
        m = (ins == i) & is_thing
        if not m.any():
            continue
        c = int(torch.mode(sem[m]).values)
        counter[c] = counter.get(c, 0) + 1
        pan[m] = c * label_divisor + counter[c]
    for c in torch.unique(sem):
        c = int(c)
        if c in thing_ids:
            continue
        m = (sem == c) & (ins == 0)
        if int(m.sum()) >= stuff_area:
            pan[m] = c * label_divisor
    return pan[0].numpy().astype(np.int32)


def segment_agreement(ref: np.ndarray, got: np.ndarray, label_divisor: int = 1000) -> float:
    """Fraction of pixels on which two panoptic maps agree up to instance renumbering: each ref
    segment is matched to the got segment it overlaps most (one-to-one, same class)."""
    pairs, counts = np.unique(np.stack([ref.ravel(), got.ravel()]), axis=1, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (r, g), n in zip(pairs.T, counts):
        if r not in best or n > best[r][1]:
            best[int(r)] = (int(g), int(n))
    used: set[int] = set()
    ok = 0
    for r, (g, n) in best.items():
        same_class = (r < 0 and g < 0) or (
            r >= 0 and g >= 0 and r // label_divisor == g // label_divisor
        )
        if same_class and g not in used:
            used.add(g)
            ok += n
    return ok / ref.size
