"""torch backend: the eager model on CPU or one CUDA device.

CPU: ``torch.inference_mode()``, ``torch.set_num_threads(threads)`` when ``threads > 0``
(process-wide: torch has one intra-op pool per process).

CUDA (``device="cuda"`` / ``"cuda:N"``), per backend instance (the node makes one per camera, or
one batched backend):
  * its own ``torch.cuda.Stream``: copies and kernels of two cameras overlap;
  * pinned host buffers for inputs and outputs, ``non_blocking`` copies on that stream, one
    ``stream.synchronize()`` per ``infer``;
  * ``precision="fp16"``: the network runs under ``torch.autocast(dtype=float16)`` and its three
    raw heads are cast back to float32 before the in-graph post-processing (threshold, NMS,
    TopK, nearest-centre grouping run in fp32, so centre coordinates keep full precision);
  * ``cuda_graph=True``: after a warm-up on the backend's stream, one ``torch.cuda.CUDAGraph``
    is captured for the static input shape and replayed per frame (inputs are copied into the
    captured static buffers, outputs read from the captured output tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from panoptic_ros.backends.base import Backend, BackendError, TensorSpec

_PRECISIONS = ("fp32", "fp16")


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        model: Any,
        *,
        batch: int = 1,
        device: str = "cpu",
        threads: int = 0,
        precision: str = "fp32",
        cuda_graph: bool = False,
        input_size: tuple[int, int] | None = None,
        top_k: int | None = None,
        warmup: int = 3,
    ) -> None:
        """``model`` is a ModelInfo (weights loaded in ``open``) or an eval-mode ``nn.Module``
        with the contract's forward(image, center_threshold); then pass ``input_size``/``top_k``."""
        super().__init__()
        self._source = model
        self.batch = int(batch)
        self._device_str = str(device)
        self.threads = int(threads)
        self.precision = str(precision).lower()
        self.cuda_graph = bool(cuda_graph)
        self.warmup = int(warmup)
        if self.precision == "int8":
            raise BackendError(
                "torch backend: int8 is only supported by the tensorrt backend and onnxruntime "
                "(the model's QDQ graph)"
            )
        if self.precision not in _PRECISIONS:
            raise BackendError(
                f"torch backend: unknown precision {precision!r}; choose fp32 or fp16"
            )
        is_cuda = self._device_str.startswith("cuda")
        if not is_cuda and self._device_str != "cpu":
            raise BackendError(
                f"torch backend: unknown device {device!r} (use 'cpu', 'cuda' or 'cuda:N')"
            )
        if not is_cuda and self.precision != "fp32":
            raise BackendError("torch backend: fp16 needs a CUDA device (CPU runs fp32)")
        if not is_cuda and self.cuda_graph:
            raise BackendError("torch backend: cuda_graph needs a CUDA device")
        if input_size is None:
            input_size = tuple(getattr(model, "input_size", ()) or ())
        if top_k is None:
            top_k = getattr(model, "top_k", None)
        if len(input_size) != 2 or not top_k:
            raise BackendError(
                "torch backend: model input_size [H, W] and top_k are needed (ModelInfo or arguments)"
            )
        h, w = (int(v) for v in input_size)
        b, k = self.batch, int(top_k)
        self.input_specs = {
            "image": TensorSpec("image", (b, 3, h, w), np.dtype(np.float32)),
            "center_threshold": TensorSpec("center_threshold", (1,), np.dtype(np.float32)),
        }
        self.output_specs = {
            "semantic": TensorSpec("semantic", (b, h, w), np.dtype(np.int32)),
            "instance": TensorSpec("instance", (b, h, w), np.dtype(np.int32)),
            "center_score": TensorSpec("center_score", (b, k), np.dtype(np.float32)),
        }
        self._model = None
        self._dev = None
        self._stream = None
        self._host_in: dict[str, Any] = {}
        self._dev_in: dict[str, Any] = {}
        self._host_out: dict[str, Any] = {}
        self._graph = None
        self._graph_out: tuple | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def _open(self) -> None:
        import torch

        if self._device_str.startswith("cuda"):
            if not torch.cuda.is_available():
                raise BackendError(
                    f"torch backend: device {self._device_str!r} requested but torch {torch.__version__} sees no CUDA GPU; "  # noqa: E501
                    "use device='cpu' or backend 'onnxruntime'"
                )
            self._dev = torch.device(self._device_str)
            if self._dev.index is None:
                self._dev = torch.device("cuda", torch.cuda.current_device())
            if self._dev.index >= torch.cuda.device_count():
                raise BackendError(
                    f"torch backend: {self._device_str!r} but only {torch.cuda.device_count()} CUDA device(s)"
                )
        else:
            self._dev = torch.device("cpu")
            if self.threads > 0:
                torch.set_num_threads(self.threads)
        model = self._load_model()
        model = model.eval().to(self._dev)
        for p in model.parameters():
            p.requires_grad_(False)
        self._model = model
        if self._dev.type == "cuda":
            self._open_cuda()

    def _load_model(self):
        import torch

        if isinstance(self._source, torch.nn.Module):
            return self._source
        try:
            return self._source.torch_module()  # ModelSource (backends/base.py)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                f"torch backend: cannot load model {getattr(self._source, 'path', self._source)}: {exc}"
            ) from exc

    def _open_cuda(self) -> None:
        import torch

        self._stream = torch.cuda.Stream(device=self._dev)
        for name, spec in self.input_specs.items():
            self._host_in[name] = torch.empty(spec.shape, dtype=torch.float32, pin_memory=True)
            self._dev_in[name] = torch.empty(spec.shape, dtype=torch.float32, device=self._dev)
        for name, spec in self.output_specs.items():
            dt = torch.int32 if spec.dtype == np.int32 else torch.float32
            self._host_out[name] = torch.empty(spec.shape, dtype=dt, pin_memory=True)
        # warm-up (cuDNN autotuning, lazy allocations) on our own stream, as the capture API requires
        self._dev_in["center_threshold"].fill_(0.5)
        self._dev_in["image"].zero_()
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            for _ in range(max(self.warmup, 1 if self.cuda_graph else 0)):
                self._forward(self._dev_in["image"], self._dev_in["center_threshold"])
        self._stream.synchronize()
        if self.cuda_graph:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.inference_mode(), torch.cuda.graph(graph, stream=self._stream):
                    self._graph_out = self._forward(
                        self._dev_in["image"], self._dev_in["center_threshold"]
                    )
            except Exception as exc:
                raise BackendError(
                    f"torch backend: CUDA graph capture failed ({exc}); use cuda_graph=False"
                ) from exc
            self._graph = graph

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._graph = self._graph_out = None
        self._host_in.clear()
        self._dev_in.clear()
        self._host_out.clear()
        self._model = self._stream = None

    # -- inference ----------------------------------------------------------------------
    def _forward(self, image, thr):
        """Run the model; fp16 runs the network under autocast, post-processing in fp32."""
        import torch

        m = self._model
        if self.precision == "fp16":
            net, post = getattr(m, "net", None), getattr(m, "post", None)
            if net is not None and post is not None:
                # cache_enabled=False: autocast's weight-cast cache must not outlive a CUDA graph capture
                with torch.autocast(
                    device_type="cuda", dtype=torch.float16, cache_enabled=not self.cuda_graph
                ):
                    raw = net(image)
                return post(*(t.float() for t in raw), thr)
            with torch.autocast(
                device_type="cuda", dtype=torch.float16, cache_enabled=not self.cuda_graph
            ):
                out = m(image, thr)
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return m(image, thr)

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self._dev.type == "cpu":
            with torch.inference_mode():
                image = torch.from_numpy(np.ascontiguousarray(inputs["image"], dtype=np.float32))
                thr = torch.from_numpy(
                    np.ascontiguousarray(inputs["center_threshold"], dtype=np.float32)
                )
                out = self._forward(image, thr)
            return self._pack(out)
        # CUDA: host -> pinned -> device on our stream, run, device -> pinned, one sync
        for name in self.input_specs:
            self._host_in[name].numpy()[...] = inputs[name]
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            for name in self.input_specs:
                self._dev_in[name].copy_(self._host_in[name], non_blocking=True)
            if self._graph is not None:
                self._graph.replay()
                out = self._graph_out
            else:
                out = self._forward(self._dev_in["image"], self._dev_in["center_threshold"])
            for name, t in zip(self.output_specs, out):
                self._host_out[name].copy_(t, non_blocking=True)
        self._stream.synchronize()
        return {name: self._host_out[name].numpy().copy() for name in self.output_specs}

    def _pack(self, out) -> dict[str, np.ndarray]:
        res = {}
        for (name, spec), t in zip(self.output_specs.items(), out):
            res[name] = t.detach().cpu().numpy().astype(spec.dtype, copy=False)
        return res

    @property
    def device(self) -> str:
        if self._dev is not None and self._dev.type == "cuda":
            import torch

            extra = ", fp16" if self.precision == "fp16" else ""
            extra += ", cuda graph" if self._graph is not None else ""
            return f"{self._dev} ({torch.cuda.get_device_name(self._dev)}{extra})"
        return "cpu"
