"""The one interface every model family implements.

A *family* knows how one kind of exported network wants its input and what its raw outputs mean:
this project's own contract, Panoptic-DeepLab raw heads, mask classification (HF Mask2Former /
MaskFormer, DETR-seg) and Ultralytics YOLO-seg. The Segmenter (core/pipeline.py) is
family-agnostic: it asks the family to ``prepare`` frames, runs the backend on the feeds, and asks
the family to ``decode`` each image's outputs into ``Segments`` at the frame's own resolution. The
shared host step (``core.postprocess``) then turns Segments into a ``PanopticResult`` (area filters,
contiguous ids, per-instance records), so every family publishes the same messages.

Why this split: the model-specific parts (resize vs letterbox, normalisation, how masks and classes
are fused) are small and must match each library's own post-processing exactly; everything after
that is the same for all families and is tested once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from panoptic_ros.core.postprocess import PostprocessConfig, build_result, result_from_segments
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import (  # noqa: F401 (defined in core: the Segmenter uses them)
    PanopticResult,
    Prepared,
    Segments,
)


@dataclass(frozen=True)
class TensorInfo:
    """One ONNX graph input or output: ``shape`` entries are ints, or a str / None for dynamic
    axes; ``dtype`` is a numpy dtype name ("float32", "int64", ...)."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


@dataclass(frozen=True)
class OnnxSignature:
    """What a family is recognised from: the graph's inputs and outputs (in graph order) and the
    ONNX ``metadata_props`` (Ultralytics writes ``task``, ``names``, ``imgsz``, ``stride`` there)."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass(frozen=True)
class ParamSpec:
    """A family threshold exposed as a node parameter (with descriptor and range) and a CLI option.
    ``name`` is the node parameter name; ranges are inclusive."""

    name: str
    default: float | int
    low: float | int
    high: float | int
    description: str


class ModelFamily(ABC):
    """Base of every family. Subclasses set ``name`` and ``PARAMETERS`` and implement ``matches``,
    ``prepare`` and ``decode``. ``config`` holds the current threshold values by parameter name;
    ``update_config`` validates against ``PARAMETERS`` (ValueError naming the parameter and range)."""

    name: ClassVar[str] = ""
    PARAMETERS: ClassVar[tuple[ParamSpec, ...]] = ()
    #: every class is a countable object (detectors such as YOLO-seg): the factory marks every
    #: taxonomy class a thing, whatever the presets say about its name ("road" is stuff in them)
    ALL_THINGS: ClassVar[bool] = False

    def __init__(
        self,
        taxonomy: Taxonomy,
        signature: OnnxSignature,
        card: Mapping[str, Any] | None = None,
        source: Path | None = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.signature = signature
        self.card = dict(card or {})
        self.source = source
        self.config: dict[str, float | int] = {p.name: p.default for p in self.PARAMETERS}
        overrides = self.card.get("thresholds") or {}
        if overrides:
            self.update_config(**overrides)

    @classmethod
    @abstractmethod
    def violations(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> list[str]:
        """Every way ``signature`` / ``card`` breaks this family's contract (empty: recognised).

        The registry prints these for every family at once when nothing matches, so they are
        specific reasons ("output 'center_heatmap' missing", ...)."""

    @abstractmethod
    def prepare(self, images: Sequence[np.ndarray], batch: int) -> Prepared:
        """(H, W, 3) uint8 RGB frames (any sizes) -> feeds for one backend call."""

    @abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray], prepared: Prepared, index: int) -> Segments:
        """The raw outputs of one backend call -> frame ``index``'s Segments at its resolution."""

    # -- optional hooks (defaults serve every family; override where a family knows more) ------
    @classmethod
    def matches(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> bool:
        """True when this family recognises the graph (and the card, if any): no violations."""
        return not cls.violations(signature, card)

    @classmethod
    def num_classes(cls, signature: OnnxSignature, card: Mapping[str, Any]) -> int | None:
        """Classes the graph predicts, when its shapes or metadata say (None: unknown). The factory
        refuses a taxonomy of another size, naming both counts and the file consulted."""
        return None

    def runnable_onnx(self, path: Path) -> Path:
        """The ONNX file the backend should open for ``path``: ``path`` itself, unless the family
        knows an export of its kind that the runtime cannot load as written (mask classification:
        TorchScript's float64 GridSample grid) and returns a fixed copy. Only such a family pays
        for reading the graph again."""
        return path

    def to_result(
        self,
        outputs: Mapping[str, np.ndarray],
        prepared: Prepared,
        index: int,
        config: PostprocessConfig,
    ) -> PanopticResult:
        """Frame ``index`` -> PanopticResult: ``decode`` then the shared host step. A family may
        override it with a faster equivalent (this project's contract keeps ``build_result``)."""
        segments = self.decode(outputs, prepared, index)
        return result_from_segments(segments, self.taxonomy, config)

    def update_config(self, **changes: float | int) -> dict[str, float | int]:
        specs = {p.name: p for p in self.PARAMETERS}
        new = dict(self.config)
        for k, v in changes.items():
            spec = specs.get(k)
            if spec is None:
                raise ValueError(f"{self.name}: unknown parameter {k!r}; known: {sorted(specs)}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ValueError(f"{k} must be a number in [{spec.low}, {spec.high}], got {v!r}")
            if not spec.low <= v <= spec.high:
                raise ValueError(f"{k} must be in [{spec.low}, {spec.high}], got {v!r}")
            new[k] = type(spec.default)(v)
        self.config = new
        return new


def segments_from_result(result: PanopticResult, taxonomy: Taxonomy) -> Segments:
    """A PanopticResult back to Segments (unlabeled -> -1): ``decode`` for families whose fast
    path builds the result directly (this project's contract, Panoptic-DeepLab)."""
    unl = 255 if taxonomy.num_classes <= 254 else 65535
    sem = result.semantic.astype(np.int32)
    sem[result.semantic == unl] = -1
    classes = np.array([i.class_id for i in result.instances], np.int32)
    scores = np.array([i.score for i in result.instances], np.float32)
    return Segments(sem, result.instance.astype(np.int32), classes, scores)


class CentreMapsFamily(ModelFamily):
    """A family whose outputs give per frame head-resolution semantic and instance maps and centre
    scores (this project's contract, Panoptic-DeepLab). Why a class: ``build_result`` turns those
    maps into the result in one pass, so ``to_result`` skips Segments, and ``decode`` (for
    callers that want Segments) is that result read back; subclasses give ``instance_maps``."""

    @abstractmethod
    def instance_maps(
        self, outputs: Mapping[str, np.ndarray], index: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index``: semantic (h, w) class ids, instance (h, w: 0 or k + 1 for centre k)
        and centre scores (K,)."""

    def to_result(
        self,
        outputs: Mapping[str, np.ndarray],
        prepared: Prepared,
        index: int,
        config: PostprocessConfig,
    ) -> PanopticResult:
        semantic, instance, scores = self.instance_maps(outputs, index)
        if scores.size == 0:
            scores = np.zeros(1, np.float32)  # build_result needs K >= 1; no pixel refers to it
        return build_result(
            semantic, instance, scores, prepared.image_hw[index], self.taxonomy, config
        )

    def decode(self, outputs: Mapping[str, np.ndarray], prepared: Prepared, index: int) -> Segments:
        r = self.to_result(outputs, prepared, index, PostprocessConfig(1.0, 0, 0))
        return segments_from_result(r, self.taxonomy)
