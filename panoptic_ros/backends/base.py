"""The backend protocol: open, infer on named arrays, close.

Template method in the spirit of Polygraphy's runners: subclasses implement the
``_open``/``_infer``/``_close`` hooks, the base class enforces the lifecycle and checks
inputs against the specs so every backend fails the same clear way on bad input.
Heavy imports (onnxruntime, torch, tensorrt) happen inside ``_open`` so importing this
package never needs them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class BackendError(RuntimeError):
    """A backend cannot be used: missing package, no GPU, bad model file, bad input."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape and numpy dtype of one model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


class ModelSource(Protocol):
    """What ``create_backend`` needs from a model (``families.model_store.ModelInfo`` is one).

    Backends sit below the model families, so they get the model as this protocol instead of
    importing the store: the store decides where the ONNX file comes from (user file, the one
    shipped beside the weights, the export cache) and how the torch module is built.
    """

    name: str
    onnx_path: Path | None  # set for a user ONNX file (no torch weights)

    def onnx_file(self, batch: int = 1, precision: str = "fp32") -> Path:
        """An ONNX file of the model with static batch ``batch``; ``precision="int8"``: its
        quantized (QDQ) graph, which ONNX Runtime and TensorRT both run."""
        ...

    def torch_module(self) -> Any:
        """The eval-mode torch module with the contract's forward(image, center_threshold)."""
        ...


class Backend(ABC):
    """One loaded model on one device. Not thread-safe: one worker calls ``infer``."""

    #: short name used by the ``backend`` parameter ("onnxruntime", "torch", "tensorrt")
    name: str = "base"

    def __init__(self) -> None:
        self._is_open = False
        self.input_specs: dict[str, TensorSpec] = {}
        self.output_specs: dict[str, TensorSpec] = {}

    # -- lifecycle ------------------------------------------------------------------
    def open(self) -> Backend:
        if not self._is_open:
            self._open()
            self._is_open = True
        return self

    def close(self) -> None:
        if self._is_open:
            self._close()
            self._is_open = False

    @property
    def is_open(self) -> bool:
        return self._is_open

    def __enter__(self) -> Backend:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inference ------------------------------------------------------------------
    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._is_open:
            raise BackendError(f"{self.name} backend used before open()")
        for name, spec in self.input_specs.items():
            if name not in inputs:
                raise BackendError(
                    f"{self.name}: missing input {name!r} (model expects {list(self.input_specs)})"
                )
            arr = inputs[name]
            shape = tuple(getattr(arr, "shape", ()))
            if len(shape) != len(spec.shape) or any(
                e > 0 and a != e for a, e in zip(shape, spec.shape)
            ):
                raise BackendError(
                    f"{self.name}: input {name!r} has shape {shape}, model expects {spec.shape}"
                )
        unexpected = sorted(set(inputs) - set(self.input_specs))
        if unexpected:
            raise BackendError(
                f"{self.name}: unexpected input(s) {unexpected} (model expects {list(self.input_specs)})"
            )
        return self._infer(inputs)

    @property
    def device(self) -> str:
        """Human-readable device for diagnostics, e.g. "cpu" or "cuda:0 (NVIDIA H100)"."""
        return "cpu"

    @property
    def max_batch(self) -> int:
        """Largest batch one ``infer`` accepts; >1 lets the node batch several cameras."""
        first = next(iter(self.input_specs.values()), None)
        return first.shape[0] if first is not None and first.shape[0] > 0 else 1

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:
        pass
