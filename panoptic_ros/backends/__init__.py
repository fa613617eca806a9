"""Inference backends behind one small protocol (see base.Backend).

``create_backend(name, info, ...)`` is the only entry point the pipeline and the node use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Backend, BackendError, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..model_store import ModelInfo

BACKEND_NAMES = ("auto", "onnxruntime", "torch", "tensorrt")

__all__ = ["Backend", "BackendError", "TensorSpec", "BACKEND_NAMES", "create_backend"]


def create_backend(name: str, info: "ModelInfo", *, batch: int = 1, **options: Any) -> Backend:
    """Build (not open) the backend ``name`` for model ``info``.

    Raises BackendError naming what is missing when the backend cannot work here.
    """
    if name not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if name in ("onnxruntime", "auto"):
        from ..model_store import resolve_onnx
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(resolve_onnx(info, batch=batch), **options)
    raise BackendError(f"backend {name!r} is not implemented yet")
