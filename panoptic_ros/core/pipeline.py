"""``Segmenter``: preprocess -> backend -> postprocess, one object per model + backend.

    with Segmenter.from_model("default", "onnxruntime") as seg:
        result = seg.segment(rgb_frame)          # PanopticResult at the frame's resolution
        seg.update_config(center_threshold=0.2)  # from any thread; validated

Threading: one worker thread calls ``segment``/``segment_batch``; other threads may call
``update_config`` / read ``config`` at any time (the config is an immutable object swapped under a
lock; each call reads it once). ``timings`` holds the last call's stage times in ms.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from panoptic_ros.core.postprocess import PostprocessConfig, build_result
from panoptic_ros.core.preprocess import Preprocessor, check_image
from panoptic_ros.core.types import PanopticResult
from panoptic_ros.families.model_store import ModelInfo, load_model_info


class Segmenter:
    def __init__(self, backend, info: ModelInfo, config: PostprocessConfig | None = None) -> None:
        self.backend = backend
        self.info = info
        self._config = config or PostprocessConfig()
        self._lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._pre = Preprocessor(info.input_size)
        self.timings: dict[str, float] = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}

    @classmethod
    def from_model(
        cls,
        model: str | Any = "default",
        backend: str = "onnxruntime",
        *,
        batch: int = 1,
        config: PostprocessConfig | None = None,
        **backend_options: Any,
    ) -> Segmenter:
        """Load ``model`` ("default", a model directory, an .onnx file, or a ModelInfo) on ``backend``."""
        from panoptic_ros.backends import create_backend

        info = model if isinstance(model, ModelInfo) else load_model_info(model)
        be = create_backend(backend, info, batch=batch, **backend_options)
        be.open()
        return cls(be, info, config)

    # -- config -------------------------------------------------------------------------------
    @property
    def taxonomy(self):
        return self.info.taxonomy

    @property
    def config(self) -> PostprocessConfig:
        with self._lock:
            return self._config

    def update_config(self, **changes: Any) -> PostprocessConfig:
        """Replace some fields; ValueError (naming the field and range) leaves the old config in place."""
        fields = {f.name for f in dataclasses.fields(PostprocessConfig)}
        unknown = set(changes) - fields
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}; known: {sorted(fields)}")
        with self._lock:
            new = dataclasses.replace(self._config, **changes)  # __post_init__ validates
            self._config = new
            return new

    # -- inference ------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Fixed batch of the backend (frames per infer call)."""
        try:
            return max(1, int(self.backend.max_batch))
        except Exception:
            return 1

    def segment(self, image: np.ndarray) -> PanopticResult:
        """(H, W, 3) uint8 RGB -> PanopticResult at (H, W)."""
        return self.segment_batch([image])[0]

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[PanopticResult]:
        """Several frames (any sizes) -> one result each; chunks by the backend batch, pads a partial batch."""
        images = [check_image(im) for im in images]
        if not images:
            return []
        cfg = self.config
        B = self.batch_size
        out: list[PanopticResult] = []
        tot = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
        thr = np.array([cfg.center_threshold], np.float32)
        for start in range(0, len(images), B):
            chunk = images[start : start + B]
            t0 = time.perf_counter()
            x = self._pre(chunk, batch=B)
            t1 = time.perf_counter()
            with self._infer_lock:
                res = self.backend.infer({"image": x, "center_threshold": thr})
            t2 = time.perf_counter()
            sem, ins, score = res["semantic"], res["instance"], res["center_score"]
            part = []
            for i, im in enumerate(chunk):
                part.append((sem[i], ins[i], score[i], im.shape[:2]))
            results = [build_result(s, n, c, hw, self.info.taxonomy, cfg) for s, n, c, hw in part]
            t3 = time.perf_counter()
            tot["preprocess"] += (t1 - t0) * 1e3
            tot["infer"] += (t2 - t1) * 1e3
            tot["postprocess"] += (t3 - t2) * 1e3
            out.extend(results)
        timings = dict(tot)
        self.timings = timings
        n = len(out)
        per = {k: v / n for k, v in timings.items()} if n > 1 else timings
        return [dataclasses.replace(r, timings=dict(per)) for r in out]

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        if hasattr(self.backend, "open"):
            self.backend.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
