"""This project's own ONNX contract (docs/ARCHITECTURE.md "Model contract"), behaviour unchanged.

    image float32 [B,3,H,W] raw RGB 0..255, center_threshold float32 [1]
      -> semantic int32 [B,H,W], instance int32 [B,H,W] (0 or k + 1), center_score float32 [B,K]

The graph already did argmax, centre NMS / TopK and grouping; the host step is
``postprocess.build_result`` on the network-resolution maps (base.CentreMapsFamily: ``to_result``
keeps that fast path; ``decode`` exists for callers that want Segments). Preprocessing: stretch
resize to the graph's static input size (core/preprocess.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from panoptic_ros.core.preprocess import Preprocessor
from panoptic_ros.families.base import (
    CentreMapsFamily,
    OnnxSignature,
    ParamSpec,
    Prepared,
)

INPUTS = ("image", "center_threshold")
OUTPUTS = ("semantic", "instance", "center_score")


class OursFamily(CentreMapsFamily):
    name = "ours"
    PARAMETERS = (
        ParamSpec(
            "center_threshold",
            0.1,
            1e-6,
            1.0,
            "Instance centre score threshold (a graph input of this contract).",
        ),
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        shape = self.signature.input("image").shape
        self.input_size = (int(shape[2]), int(shape[3]))
        self._pre = Preprocessor(self.input_size)

    @classmethod
    def violations(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> list[str]:
        out = []
        ins = [n for n in INPUTS if signature.input(n) is None]
        outs = [n for n in OUTPUTS if signature.output(n) is None]
        out += [f"input '{n}' missing" for n in ins]
        out += [f"output '{n}' missing" for n in outs]
        img = signature.input("image")
        if img is not None:
            s = img.shape
            if len(s) != 4 or s[1] != 3 or not all(isinstance(d, int) and d >= 16 for d in s[2:]):
                out.append(
                    f"input 'image' has shape {list(s)}, needs static [B,3,H,W] with H,W >= 16"
                )
            if img.dtype != "float32":
                out.append(f"input 'image' must be float32, is {img.dtype}")
        return out

    def prepare(self, images: Sequence[np.ndarray], batch: int) -> Prepared:
        x = self._pre(images, batch=batch)
        thr = np.array([self.config["center_threshold"]], np.float32)
        return Prepared({"image": x, "center_threshold": thr}, [im.shape[:2] for im in images], [])

    def instance_maps(
        self, outputs: Mapping[str, np.ndarray], index: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            outputs["semantic"][index],
            outputs["instance"][index],
            outputs["center_score"][index],
        )
