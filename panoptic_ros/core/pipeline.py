"""``Segmenter``: family.prepare -> backend.infer -> family.to_result, one object per model + backend.

    from panoptic_ros.families.factory import build_segmenter
    with build_segmenter("default", "onnxruntime") as seg:
        result = seg.segment(rgb_frame)          # PanopticResult at the frame's resolution
        seg.update_config(center_threshold=0.2)  # from any thread; validated

The Segmenter knows no model family: the *family* (families/, see families/base.py) turns frames
into the graph's feeds and the graph's outputs into a PanopticResult (``to_result``: the family's
``decode`` to Segments, then ``postprocess.result_from_segments``; this project's own contract
keeps its faster ``build_result``). It is built by ``families.factory.build_segmenter`` (core must
not import families/: the import direction is core < backends < families).

Threading: one worker thread calls ``segment``/``segment_batch``; other threads may call
``update_config`` / read ``config`` at any time (the post-processing config is an immutable
object swapped under a lock; the family's thresholds are a dict swapped whole; each call reads
them once). ``timings`` holds the last call's stage times in ms: preprocess (family.prepare),
infer (backend), postprocess (family decode + the shared host step).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from panoptic_ros.core.postprocess import PostprocessConfig
from panoptic_ros.core.preprocess import check_image
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import PanopticResult, Prepared

#: PostprocessConfig fields (shared by every family)
POSTPROCESS_FIELDS = tuple(f.name for f in dataclasses.fields(PostprocessConfig))


class Family(Protocol):
    """What the Segmenter needs of a model family (families.base.ModelFamily implements it)."""

    name: str
    taxonomy: Taxonomy
    config: dict[str, float | int]
    PARAMETERS: tuple[Any, ...]

    def prepare(self, images: Sequence[np.ndarray], batch: int) -> Prepared: ...

    def to_result(
        self,
        outputs: Mapping[str, np.ndarray],
        prepared: Prepared,
        index: int,
        config: PostprocessConfig,
    ) -> PanopticResult: ...

    def update_config(self, **changes: float | int) -> dict[str, float | int]: ...


class Segmenter:
    """One model family on one opened backend, with the shared post-processing config."""

    def __init__(
        self, family: Family, backend: Any, config: PostprocessConfig | None = None
    ) -> None:
        self.family = family
        self.backend = backend
        self._config = config or PostprocessConfig()
        self._lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self.timings: dict[str, float] = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}

    # -- config -------------------------------------------------------------------------------
    @property
    def taxonomy(self) -> Taxonomy:
        return self.family.taxonomy

    @property
    def config(self) -> PostprocessConfig:
        with self._lock:
            return self._config

    @property
    def family_config(self) -> dict[str, float | int]:
        """The family's current thresholds by parameter name (a copy)."""
        return dict(self.family.config)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Every name ``update_config`` accepts: the shared fields, then the family's own."""
        own = tuple(p.name for p in self.family.PARAMETERS if p.name not in POSTPROCESS_FIELDS)
        return POSTPROCESS_FIELDS + own

    def family_parameters(self) -> tuple[Any, ...]:
        """The family's own thresholds (ParamSpec: name, default, low, high, description) beyond
        the shared PostprocessConfig fields: the node declares them as parameters."""
        return tuple(p for p in self.family.PARAMETERS if p.name not in POSTPROCESS_FIELDS)

    def update_config(self, **changes: Any) -> PostprocessConfig:
        """Replace some values: PostprocessConfig fields and the family's parameters (a name in
        both, e.g. ``center_threshold``, sets both). ValueError (naming the field and range)
        leaves everything as it was."""
        fam_names = {p.name for p in self.family.PARAMETERS}
        unknown = set(changes) - set(POSTPROCESS_FIELDS) - fam_names
        if unknown:
            raise ValueError(
                f"unknown config field(s) {sorted(unknown)}; known: {sorted(self.parameter_names)}"
            )
        shared = {k: v for k, v in changes.items() if k in POSTPROCESS_FIELDS}
        own = {k: v for k, v in changes.items() if k in fam_names}
        with self._lock:
            new = dataclasses.replace(self._config, **shared)  # __post_init__ validates
            if own:
                self.family.update_config(**own)  # validates; raises before anything changed
            self._config = new
            return new

    # -- inference ------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Fixed batch of the backend (frames per infer call)."""
        return max(1, int(self.backend.max_batch))

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
        family = self.family
        for start in range(0, len(images), B):
            chunk = images[start : start + B]
            t0 = time.perf_counter()
            prepared = family.prepare(chunk, B)
            t1 = time.perf_counter()
            with self._infer_lock:
                res = self.backend.infer(prepared.feeds)
            t2 = time.perf_counter()
            results = [family.to_result(res, prepared, i, cfg) for i in range(len(chunk))]
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
        self.backend.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
