"""Ultralytics YOLO-seg models for tests: built from the library's own yaml with random init,
exported with its own exporter, and run through its own predict steps as the reference.

Two things about this environment (both said in docs/models-ultralytics.md):

* torchvision is not installed (PyPI's wheel breaks beside this torch build), but
  ``ultralytics.utils`` reads ``importlib.metadata.version("torchvision")`` at import time.
  ``import_ultralytics`` therefore puts a directory holding only a ``torchvision-0.28.0.dist-info``
  (the release paired with torch 2.13) on ``sys.path`` for the import and removes it afterwards.
  No torchvision code is provided: ``import torchvision`` still fails, which is exactly what makes
  ultralytics' ``non_max_suppression`` use its own pure-torch ``TorchNMS.nms`` (utils/nms.py: it
  uses torchvision only when already imported).
* A freshly built yaml model has vanishing activations (every anchor gives the same score), so
  ``build_yolo_seg_onnx`` re-estimates the BatchNorm statistics on a few random images (still no
  training) and biases the class head, so that detections of many classes, sizes and scores occur
  and the parity tests can fail.

Usage: ``ultra = import_ultralytics(tmp_dir)`` first (it also points YOLO_CONFIG_DIR at tmp_dir).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

TORCHVISION_PAIRED = "0.28.0"  # torch 2.13 <-> torchvision 0.28


def import_ultralytics(tmp_dir: Path):
    """Import ultralytics (see the module docstring); raises ImportError when not installed."""
    if "ultralytics" in sys.modules:
        return sys.modules["ultralytics"]
    importlib.util.find_spec("ultralytics") or _raise()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_dir / "ultralytics_config"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["YOLO_VERBOSE"] = "False"
    shim = None
    try:
        importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        shim = tmp_dir / "torchvision_metadata"
        info = shim / f"torchvision-{TORCHVISION_PAIRED}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: torchvision\nVersion: {TORCHVISION_PAIRED}\n"
        )
        sys.path.insert(0, str(shim))
    try:
        import ultralytics
        import ultralytics.utils.nms  # noqa: F401 (imports everything the reference needs)
    finally:
        if shim is not None:
            sys.path.remove(str(shim))
    return ultralytics


def _raise():
    raise ImportError("ultralytics is not installed (pip install ultralytics --no-deps)")


def coco_names() -> dict[int, str]:
    """The 80 COCO names as ultralytics ships them (cfg/datasets/coco.yaml)."""
    import yaml
    from ultralytics.utils import ROOT

    return yaml.safe_load((ROOT / "cfg/datasets/coco.yaml").read_text())["names"]


def smooth_image(rng: np.random.Generator, h: int, w: int, blob: int = 24) -> np.ndarray:
    """A uint8 (h, w, 3) image of colour blobs about ``blob`` pixels wide plus a little noise."""
    import cv2

    small = rng.integers(0, 256, (max(h // blob, 2), max(w // blob, 2), 3)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def build_yolo_seg_onnx(
    out_dir: Path,
    yaml_name: str,
    imgsz: tuple[int, int],
    names: dict[int, str] | None = None,
    nms: bool | None = None,
    class_bias: float = -1.2,
    weight_scale: float = 0.3,
    seed: int = 0,
    dynamic: bool = False,
) -> Path:
    """Build ``yaml_name`` (e.g. "yolo11n-seg.yaml") with random init, with ``len(names)``
    classes (default: the yaml's 80 with Ultralytics' placeholder names '0'..'79'), and export it
    with ``YOLO.export(format="onnx", imgsz=imgsz, nms=nms)``. Cached by arguments in out_dir."""
    import torch
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    nc = len(names) if names else 80
    tag = (
        f"{Path(yaml_name).stem}_{imgsz[0]}x{imgsz[1]}_nc{nc}_nms{nms}"
        f"_b{class_bias}_w{weight_scale}_s{seed}_d{dynamic}"
    )
    target = out_dir / f"{tag}.onnx"
    if target.exists():
        return target
    work = out_dir / tag
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml_model_load(yaml_name)
    cfg["nc"] = nc
    cfg.pop("yaml_file", None)
    cfg_path = work / yaml_name  # keeps the scale letter ("n") in the file name for ultralytics
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    torch.manual_seed(seed)
    model = YOLO(str(cfg_path), task="segment")
    net = model.model
    if names:
        net.names = dict(names)
    _calibrate(net, imgsz, seed)
    head = net.model[-1]
    with torch.no_grad():
        for seq in list(head.cv3) + list(getattr(head, "one2one_cv3", None) or []):
            # Moderate logits: far from the float32 sigmoid saturation at 1.0, where equal scores
            # would make the NMS order depend on torch's unstable sort.
            seq[-1].weight.mul_(weight_scale)
            seq[-1].bias.fill_(class_bias)
    exported = Path(
        model.export(format="onnx", imgsz=list(imgsz), nms=nms, dynamic=dynamic, verbose=False)
    )
    exported.replace(target)
    # The torch model beside it, in the head mode the ONNX was exported in (YOLO26 builds
    # end-to-end; the default export switches to the raw one2many head), for torch references.
    if hasattr(net, "end2end"):
        net.end2end = nms is False
    torch.save(net, target.with_suffix(".pt"))
    return target


def load_torch_model(onnx_path: Path):
    """The torch model ``build_yolo_seg_onnx`` exported to ``onnx_path``."""
    import torch

    return torch.load(onnx_path.with_suffix(".pt"), map_location="cpu", weights_only=False)


def _calibrate(net, imgsz: tuple[int, int], seed: int) -> None:
    """Re-estimate BatchNorm running statistics on random images (forward passes only)."""
    import torch

    rng = np.random.default_rng(seed)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the passes
    net.train()
    with torch.no_grad():
        for _ in range(4):  # blob sizes as the letterboxed test frames have them
            batch = np.stack([smooth_image(rng, *imgsz, blob) for blob in (4, 8, 24, 64, 160)])
            net(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255)
    net.eval()


class UltralyticsReference:
    """Ultralytics' own predict steps on an exported ONNX or a torch model:
    SegmentationPredictor.setup_model (AutoBackend -> onnxruntime or the fused torch model),
    .preprocess (LetterBox, BGR->RGB, /255), the AutoBackend call,
    .postprocess (non_max_suppression, process_mask, scale_boxes, the empty-mask filter). Only the
    stream/warm-up plumbing of ``predictor(...)`` is skipped: its warm-up imports torchvision.
    Masks go to the frame as Results.plot draws them: ops.scale_masks(...) > 0.5."""

    def __init__(
        self,
        model,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        imgsz: tuple[int, int] | None = None,
        nms: bool | None = None,
    ):
        """model: an exported .onnx path, or a torch SegmentationModel (then give imgsz; nms=False
        selects YOLO26's NMS-free head, as ``predict(nms=False)`` does)."""
        from ultralytics.models.yolo.segment import SegmentationPredictor

        self.predictor = SegmentationPredictor(
            overrides=dict(conf=conf, iou=iou, max_det=max_det, verbose=False, save=False, nms=nms)
        )
        self.predictor.setup_model(str(model) if isinstance(model, Path) else model, verbose=False)
        self.predictor.imgsz = list(imgsz) if imgsz else self.predictor.model.imgsz
        self.predictor.scale_fill = False

    def __call__(self, rgb: np.ndarray) -> dict[str, Any]:
        import torch
        from ultralytics.utils import ops

        p = self.predictor
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        p.batch = (["frame"],)
        with torch.no_grad():
            im = p.preprocess([bgr])
            preds = p.model(im)
            result = p.postprocess(preds, im, [bgr])[0]
        h, w = rgb.shape[:2]
        if result.masks is None:
            masks = np.zeros((0, h, w), bool)
        else:
            masks = (ops.scale_masks(result.masks.data[None].float(), (h, w))[0] > 0.5).numpy()
        return {
            "input": im.numpy(),
            "boxes": result.boxes.xyxy.numpy(),
            "scores": result.boxes.conf.numpy(),
            "classes": result.boxes.cls.numpy().astype(np.int64),
            "masks": masks,
            "names": dict(result.names),
        }
