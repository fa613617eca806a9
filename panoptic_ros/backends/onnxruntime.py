"""ONNX Runtime backend: the CPU default, CUDA execution provider when available."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from panoptic_ros.backends.base import Backend, BackendError, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime session on CPU (or its CUDA EP).

    ``allow_spinning`` (default False): ONNX Runtime's intra-op threads busy-wait after each run by
    default. In the node the run is followed at once by post-processing, message building and DDS
    publishing on the same few cores, and the spinning threads steal them: on the 2-core dev box,
    3 interleaved ``panoptic-ros bench`` pairs gave publish 4.2-5.6 -> 1.9-2.1 ms, postprocess
    2.9-4.0 -> 2.4-2.6 ms, e2e 27.1-29.4 -> 24.0-25.1 ms with inference unchanged (17.7-18.9 ms).
    Set it True only where the process does nothing but inference.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        threads: int = 0,
        device: str = "cpu",
        allow_spinning: bool = False,
    ) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.threads = int(threads)
        self.allow_spinning = bool(allow_spinning)
        self._device = device
        self._session = None

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(
                "onnxruntime backend needs the 'onnxruntime' package (pip install onnxruntime)"
            ) from exc
        if not self.model_path.is_file():
            raise BackendError(f"ONNX model not found: {self.model_path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads > 0:
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.allow_spinning else "0"
        )
        providers: list = ["CPUExecutionProvider"]
        if self._device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(
                    f"onnxruntime device {self._device!r} requested but this onnxruntime {ort.__version__} has no "
                    f"CUDAExecutionProvider (available: {', '.join(ort.get_available_providers())}); "
                    "install onnxruntime-gpu, or use device 'cpu'"
                )
            device_id = int(self._device.split(":", 1)[1]) if ":" in self._device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        elif self._device != "cpu":
            raise BackendError(
                f"onnxruntime backend: unknown device {self._device!r} (use 'cpu' or 'cuda[:N]')"
            )
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"cannot load ONNX model {self.model_path}: {exc}") from exc
        if (
            self._device.startswith("cuda")
            and self._session.get_providers()[0] != "CUDAExecutionProvider"
        ):
            # ORT falls back to CPU with only a warning when the CUDA EP fails to initialise
            self._session = None
            raise BackendError(
                f"onnxruntime could not initialise the CUDAExecutionProvider for {self._device!r} "
                "(CUDA/cuDNN libraries or GPU missing); use device 'cpu'"
            )
        self.input_specs = {
            i.name: TensorSpec(
                i.name, _static(i.shape), np.dtype(_ORT_DTYPES.get(i.type, np.float32))
            )
            for i in self._session.get_inputs()
        }
        self.output_specs = {
            o.name: TensorSpec(
                o.name, _static(o.shape), np.dtype(_ORT_DTYPES.get(o.type, np.float32))
            )
            for o in self._session.get_outputs()
        }

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {
            n: np.ascontiguousarray(inputs[n], dtype=s.dtype) for n, s in self.input_specs.items()
        }
        names = list(self.output_specs)
        try:
            outs = self._session.run(names, feeds)
        except Exception as exc:  # ORT's Fail / InvalidArgument
            raise BackendError(
                f"onnxruntime inference failed on {self.model_path.name}: {exc}"
            ) from exc
        return dict(zip(names, outs))

    def _close(self) -> None:
        self._session = None

    @property
    def device(self) -> str:
        if self._session is not None and self._device.startswith("cuda"):
            return f"{self._device} (onnxruntime CUDAExecutionProvider)"
        return "cpu" if self._device == "cpu" else self._device


def _static(shape) -> tuple[int, ...]:
    """ORT reports symbolic dims as strings/None; map them to -1 (any)."""
    return tuple(d if isinstance(d, int) else -1 for d in shape)
