"""ONNX Runtime backend: the CPU default, CUDA execution provider when available."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .base import Backend, BackendError, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int = 0, device: str = "cpu") -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.threads = int(threads)
        self._device = device
        self._session = None

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("onnxruntime backend needs the 'onnxruntime' package (pip install onnxruntime)") from exc
        if not self.model_path.is_file():
            raise BackendError(f"ONNX model not found: {self.model_path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads > 0:
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self._device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(
                    "onnxruntime CUDA requested but this onnxruntime has no CUDAExecutionProvider "
                    "(install onnxruntime-gpu, or use device cpu)"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"cannot load ONNX model {self.model_path}: {exc}") from exc
        self.input_specs = {
            i.name: TensorSpec(i.name, _static(i.shape), np.dtype(_ORT_DTYPES.get(i.type, np.float32)))
            for i in self._session.get_inputs()
        }
        self.output_specs = {
            o.name: TensorSpec(o.name, _static(o.shape), np.dtype(_ORT_DTYPES.get(o.type, np.float32)))
            for o in self._session.get_outputs()
        }

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {n: np.ascontiguousarray(inputs[n], dtype=s.dtype) for n, s in self.input_specs.items()}
        names = list(self.output_specs)
        return dict(zip(names, self._session.run(names, feeds)))

    def _close(self) -> None:
        self._session = None

    @property
    def device(self) -> str:
        return self._device


def _static(shape) -> tuple[int, ...]:
    """ORT reports symbolic dims as strings/None; map them to -1 (any)."""
    return tuple(d if isinstance(d, int) else -1 for d in shape)
