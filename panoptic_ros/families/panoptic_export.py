"""torch -> ONNX export (static shapes, stable names) and the ONNX Runtime vs torch parity check.

Two graphs (docs/ARCHITECTURE.md "Model contract"):
- postprocessed (what the node runs): ``image`` [B,3,H,W] float32 0..255, ``center_threshold`` [1]
  -> ``semantic`` int32 [B,H,W], ``instance`` int32 [B,H,W], ``center_score`` float32 [B,K]
- raw (parity only): ``image`` -> ``semantic_logits`` [B,C,H,W], ``center_heatmap`` [B,1,H,W],
  ``center_offset`` [B,2,H,W]
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: bump when the exported graph changes for the same weights (part of the ONNX cache key)
EXPORTER_VERSION = "2"
DEFAULT_OPSET = 17
INPUT_NAMES = ("image", "center_threshold")
OUTPUT_NAMES = ("semantic", "instance", "center_score")
RAW_OUTPUT_NAMES = ("semantic_logits", "center_heatmap", "center_offset")


def build_export_module(
    net,
    is_thing: Sequence[bool],
    height: int,
    width: int,
    top_k: int,
    nms_kernel: int,
    raw: bool = False,
):
    """The torch module that is exported (eval mode)."""
    from panoptic_ros.families.panoptic_net import PanopticExportModel, PanopticPostProcess

    if raw:
        return net.eval()
    post = PanopticPostProcess(is_thing, height, width, top_k=top_k, nms_kernel=nms_kernel)
    return PanopticExportModel(net, post).eval()


def export_onnx(
    net,
    is_thing: Sequence[bool],
    path: str | Path,
    *,
    height: int,
    width: int,
    batch: int = 1,
    top_k: int = 32,
    nms_kernel: int = 11,
    raw: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``net`` (a PanopticNet) to ``path`` atomically (temp file + os.replace).

    Static shapes: image [batch,3,height,width]. Returns the path.
    """
    import torch

    if height < 16 or width < 16 or batch < 1:
        raise ValueError(
            f"export needs height, width >= 16 and batch >= 1, got {height}x{width} batch {batch}"
        )
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    module = build_export_module(net, is_thing, height, width, top_k, nms_kernel, raw=raw)
    image = torch.zeros(batch, 3, height, width, dtype=torch.float32)
    if raw:
        args: tuple = (image,)
        in_names, out_names = ["image"], list(RAW_OUTPUT_NAMES)
    else:
        args = (image, torch.tensor([0.1], dtype=torch.float32))
        in_names, out_names = list(INPUT_NAMES), list(OUTPUT_NAMES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                tmp,
                input_names=in_names,
                output_names=out_names,
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
        _check_names(tmp, in_names, out_names)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _check_names(path: str | Path, in_names: Sequence[str], out_names: Sequence[str]) -> None:
    import onnx

    m = onnx.load(str(path))
    got_in = [i.name for i in m.graph.input]
    got_out = [o.name for o in m.graph.output]
    if got_in != list(in_names) or got_out != list(out_names):
        raise RuntimeError(
            f"exported graph has inputs {got_in} / outputs {got_out}, expected {in_names} / {out_names}"
        )


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime vs torch on the same inputs.

    max_abs_diff_*: raw-graph output differences; panoptic_identical: fraction of pixels whose
    (semantic, instance) pair is identical in the postprocessed graph outputs (the panoptic id);
    semantic_identical: same for semantic alone; n_images: images compared.
    """

    max_abs_diff_logits: float
    max_abs_diff_heatmap: float
    max_abs_diff_offset: float
    semantic_identical: float
    panoptic_identical: float
    n_images: int


def _ort_session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_parity(
    net,
    is_thing: Sequence[bool],
    images: Iterable[np.ndarray],
    *,
    post_onnx: str | Path,
    raw_onnx: str | Path,
    top_k: int = 32,
    nms_kernel: int = 11,
    center_threshold: float = 0.1,
    threads: int = 0,
) -> ParityReport:
    """Run both exported graphs (batch 1) in ONNX Runtime and the same modules in torch.

    images: iterable of (H, W, 3) uint8 RGB at the exported network size.
    """
    import torch

    from panoptic_ros.core.preprocess import to_nchw

    imgs = list(images)
    if not imgs:
        raise ValueError("parity check needs at least one image")
    h, w = imgs[0].shape[:2]
    post_mod = build_export_module(net, is_thing, h, w, top_k, nms_kernel)
    raw_sess = _ort_session(raw_onnx, threads)
    post_sess = _ort_session(post_onnx, threads)
    thr = np.array([center_threshold], np.float32)
    d_l = d_h = d_o = 0.0
    same_sem = same_pan = total = 0
    for img in imgs:
        x = to_nchw([img])
        with torch.no_grad():
            tl, th, to = (t.numpy() for t in net.eval()(torch.from_numpy(x)))
            ts, ti, _ = (t.numpy() for t in post_mod(torch.from_numpy(x), torch.from_numpy(thr)))
        ol, oh, oo = raw_sess.run(list(RAW_OUTPUT_NAMES), {"image": x})
        os_, oi, _ = post_sess.run(list(OUTPUT_NAMES), {"image": x, "center_threshold": thr})
        d_l = max(d_l, float(np.abs(ol - tl).max()))
        d_h = max(d_h, float(np.abs(oh - th).max()))
        d_o = max(d_o, float(np.abs(oo - to).max()))
        sem_eq = os_ == ts
        same_sem += int(sem_eq.sum())
        same_pan += int((sem_eq & (oi == ti)).sum())
        total += sem_eq.size
    return ParityReport(d_l, d_h, d_o, same_sem / total, same_pan / total, len(imgs))


__all__ = [
    "EXPORTER_VERSION",
    "DEFAULT_OPSET",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "RAW_OUTPUT_NAMES",
    "export_onnx",
    "ParityReport",
    "check_parity",
    "build_export_module",
]
