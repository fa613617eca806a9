"""TensorRT backend: engine built from the ONNX file, cached on disk, run on a CUDA stream.

Every decision that does not need a GPU (cache key, why to rebuild, builder flags, file names,
atomic writes) lives in ``panoptic_ros.backends.engine_cache`` and is tested without TensorRT; this
module is the thin layer over the TensorRT Python API (TensorRT 8.6 / 10.x):

  build:  trt.Builder -> create_network -> OnnxParser.parse_from_file -> IBuilderConfig
          (set_memory_pool_limit(WORKSPACE), set_flag(FP16/INT8), int8_calibrator,
          create_timing_cache/set_timing_cache) -> build_serialized_network
  int8:   from the model's QDQ graph (families/quantize.py) by explicit quantization: TensorRT
          10 builds a STRONGLY_TYPED network without precision flags or calibrator (8.x: INT8
          flag); a plain fp32 user graph still gets the implicit entropy calibrator
  run:    trt.Runtime.deserialize_cuda_engine -> create_execution_context ->
          set_tensor_address(name, torch_tensor.data_ptr()) -> execute_async_v3(stream.cuda_stream)

Buffers and streams are torch objects (torch is already a dependency): device buffers are torch
CUDA tensors allocated once in ``open``, host staging buffers are pinned torch tensors.

Several cameras: create one backend per camera. Backends for the same engine file share one
deserialised ``ICudaEngine`` (reference counted, process-wide); each backend owns its
``IExecutionContext``, CUDA stream and buffers, so cameras run concurrently without locks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.backends import engine_cache as ec
from panoptic_ros.backends.base import Backend, BackendError, TensorSpec

_log = logging.getLogger("panoptic_ros.backends.tensorrt")

# engine path -> [engine, runtime, refcount, engine sha256, trt logger]
_ENGINES: dict[str, list] = {}
_ENGINES_LOCK = threading.Lock()


def default_engine_dir() -> Path:
    return ec.default_cache_dir() / "engines"


def _trt_logger(trt, log: Callable[[str], None]):
    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:  # noqa: D401 - TensorRT callback
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                log(f"TensorRT [{str(severity).rsplit('.', 1)[-1]}]: {msg}")

    return _Logger()


def _torch_dtype(trt, dt):
    import torch

    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT8: torch.int8,
        trt.DataType.BOOL: torch.bool,
    }
    for name, tdt in (("INT64", torch.int64), ("UINT8", torch.uint8), ("BF16", torch.bfloat16)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = tdt
    if dt not in table:
        raise BackendError(f"tensorrt backend: unsupported engine tensor dtype {dt}")
    return table[dt]


def build_serialized_engine(
    trt,
    onnx_path: Path,
    settings: ec.BuilderSettings,
    input_shapes: Mapping[str, tuple[int, ...]],
    timing_cache: Path | None,
    calibrator: Any = None,
    log: Callable[[str], None] = _log.info,
) -> bytes:
    """Parse ``onnx_path`` and build a serialised engine per ``settings`` (needs a GPU)."""
    trt_log = _trt_logger(trt, log)
    builder = trt.Builder(trt_log)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if settings.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown parser error'}")
    config = builder.create_builder_config()
    for pool, nbytes in settings.memory_pools:
        config.set_memory_pool_limit(getattr(trt.MemoryPoolType, pool), int(nbytes))
    for flag in settings.flags:
        if flag == "FP16" and not getattr(builder, "platform_has_fast_fp16", True):
            log("tensorrt: this GPU has no fast FP16; building anyway")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    # fixed shapes: an optimisation profile pins any dynamic dims of the network inputs
    profile = None
    for i in range(network.num_inputs):
        t = network.get_input(i)
        if any(d < 0 for d in t.shape):
            if t.name not in input_shapes:
                raise BackendError(
                    f"tensorrt: input {t.name!r} has dynamic shape {tuple(t.shape)} and no shape was given"
                )
            profile = profile or builder.create_optimization_profile()
            shp = tuple(input_shapes[t.name])
            profile.set_shape(t.name, shp, shp, shp)
    if profile is not None:
        config.add_optimization_profile(profile)
    if settings.calibrate:
        if calibrator is None:
            raise BackendError("tensorrt: int8 needs calibration data")
        config.int8_calibrator = calibrator
        if profile is not None and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
    cache = None
    if timing_cache is not None:
        data = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(data)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log(
                f"tensorrt: timing cache {timing_cache.name} rejected (other TensorRT/GPU); starting a fresh one"
            )
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)"
        )
    if timing_cache is not None:
        ec.atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def make_calibrator(
    trt, batches: Iterable[Mapping[str, np.ndarray]], batch: int, cache_file: Path, device
):
    """IInt8EntropyCalibrator2 over host batches (dicts of named float32 arrays)."""
    import torch

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._it = iter(batches)
            self._keep: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names, *args):  # TensorRT passes the input names
            try:
                b = next(self._it)
            except StopIteration:
                return None
            ptrs = []
            for n in names:
                t = torch.from_numpy(np.ascontiguousarray(b[n], dtype=np.float32)).to(device)
                self._keep[n] = t
                ptrs.append(int(t.data_ptr()))
            torch.cuda.synchronize(device)
            return ptrs

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            ec.atomic_write_bytes(cache_file, bytes(cache))

    return _Calibrator()


def synthetic_calibration_batches(
    info: Any,
    input_shape: tuple[int, ...],
    n_batches: int = 16,
    seed0: int = 20_000_000,
    image_name: str = "image",
    with_threshold: bool = True,
):
    """Calibration inputs from generated scenes (GPU-free; seeds disjoint from training/validation).

    Raw 0..255 RGB NCHW under ``image_name`` (+ ``center_threshold`` for this project's contract);
    a graph that wants other pixels (another family) should get its own ``calibration`` batches."""
    from panoptic_ros.core.synthetic import generate_scene

    b, _, h, w = input_shape
    tax = getattr(info, "taxonomy", None)
    for i in range(n_batches):
        imgs = [
            generate_scene(seed0 + i * b + j, height=h, width=w, taxonomy=tax).image
            for j in range(b)
        ]
        image = np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32)
        feeds = {image_name: image}
        if with_threshold:
            feeds["center_threshold"] = np.array([0.1], np.float32)
        yield feeds


def image_input_name(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The graph's image input: 'image' (this project's contract), else its only 4-D input
    (pixel_values, images, ...: every family's graph has one)."""
    if "image" in shapes:
        return "image"
    four = [n for n, s in shapes.items() if len(s) == 4]
    return four[0] if len(four) == 1 else None


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        model_name: str = "model",
        info: Any = None,
        device: str = "cuda:0",
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        workspace_mb: int = ec.DEFAULT_WORKSPACE_MB,
        calibration: Iterable[Mapping[str, np.ndarray]] | None = None,
        explicit_quantization: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self.model_name = model_name
        self.info = info
        self._device_str = device
        self.explicit_quantization = bool(explicit_quantization)
        self.settings = ec.builder_settings(
            precision, workspace_mb, explicit_quantization=self.explicit_quantization
        )
        self.cache_dir = Path(cache_dir) if cache_dir else default_engine_dir()
        self.calibration = calibration
        self.log = log or _log.info
        self.engine_path: Path | None = None
        self.build_reason: str | None = None  # why the last open() built, None when it reused
        self._trt = self._engine = self._context = self._stream = self._dev = None
        self._dev_bufs: dict[str, Any] = {}
        self._host_bufs: dict[str, Any] = {}

    # -- engine ---------------------------------------------------------------------------
    def current_meta(self, trt, input_shape: tuple[int, ...]) -> ec.EngineMeta:
        import torch

        props = torch.cuda.get_device_properties(self._dev)
        return ec.EngineMeta(
            onnx_sha256=ec.sha256_file(self.onnx_path),
            tensorrt_version=trt.__version__,
            gpu_name=props.name,
            compute_capability=ec.compute_capability_str(props.major, props.minor),
            precision=self.settings.precision,
            input_shape=input_shape,
        )

    def _onnx_input_shapes(self) -> dict[str, tuple[int, ...]]:
        from panoptic_ros.backends.onnx_ops import load_model

        try:
            model = load_model(self.onnx_path)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        shapes = {}
        for vi in model.graph.input:
            dims = [
                d.dim_value if d.HasField("dim_value") else -1
                for d in vi.type.tensor_type.shape.dim
            ]
            shapes[vi.name] = tuple(dims)
        name = image_input_name(shapes)
        if name is None or any(d <= 0 for d in shapes[name]):
            raise BackendError(
                f"tensorrt: {self.onnx_path} needs one static 4-D image input [B,C,H,W] or [B,H,W,C], "
                f"got inputs {shapes}"
            )
        return shapes

    def ensure_engine(self) -> Path:
        """Build the engine unless a valid cached one exists; return its path (needs a GPU)."""
        import tensorrt as trt

        self._trt = trt
        self.settings = ec.builder_settings(  # the Q/DQ build mode depends on the major version
            self.settings.precision,
            self.settings.memory_pools[0][1] >> 20,
            explicit_quantization=self.explicit_quantization,
            tensorrt_major=int(trt.__version__.split(".")[0]),
        )
        shapes = self._onnx_input_shapes()
        meta = self.current_meta(trt, shapes[image_input_name(shapes)])
        cache_dir = ec.ensure_cache_dir(self.cache_dir)
        slot = ec.slot_name(self.model_name, meta.precision, meta.input_shape)
        engine_path, reason = ec.check_entry(cache_dir, slot, meta)
        self.engine_path = engine_path
        if reason is None:
            self.build_reason = None
            return engine_path
        for stale in ec.remove_stale_temp_files(cache_dir):
            self.log(f"tensorrt: removed abandoned partial write {stale.name}")
        self.log(
            f"tensorrt: building engine {engine_path.name} ({meta.precision}, input {list(meta.input_shape)}): {reason}"
        )
        self._build(meta, cache_dir, slot, shapes)
        self.build_reason = reason
        return engine_path

    def _build(self, meta: ec.EngineMeta, cache_dir: Path, slot: str, shapes) -> None:
        trt = self._trt
        calibrator = None
        if self.settings.calibrate:
            batches = self.calibration
            if batches is None:
                batches = synthetic_calibration_batches(
                    self.info,
                    meta.input_shape,
                    self.settings.calibration_batches,
                    image_name=image_input_name(shapes) or "image",
                    with_threshold="center_threshold" in shapes,
                )
            calibrator = make_calibrator(
                trt,
                batches,
                meta.input_shape[0],
                ec.cache_path(cache_dir, slot + ".calib"),
                self._dev,
            )
        timing = ec.cache_path(
            cache_dir, ec.timing_cache_name(meta.tensorrt_version, meta.compute_capability)
        )
        data = build_serialized_engine(
            trt, self.onnx_path, self.settings, shapes, timing, calibrator, self.log
        )
        ec.write_entry(
            cache_dir,
            slot,
            data,
            meta,
            onnx_path=str(self.onnx_path),
            workspace_mb=self.settings.memory_pools[0][1] >> 20,
        )

    def _acquire_engine(self, path: Path):
        trt = self._trt
        with _ENGINES_LOCK:
            entry = _ENGINES.get(str(path))
            sha = (ec.read_sidecar(path.with_suffix(".json")) or {}).get("engine_sha256")
            if entry is not None and entry[3] == sha:
                entry[2] += 1
                return entry[0]
            trt_log = _trt_logger(trt, self.log)  # must outlive the runtime: kept in the entry
            runtime = trt.Runtime(trt_log)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeError("deserialize_cuda_engine returned None (see the TensorRT log)")
            _ENGINES[str(path)] = [engine, runtime, 1, sha, trt_log]
            return engine

    def _release_engine(self) -> None:
        if self.engine_path is None:
            return
        with _ENGINES_LOCK:
            entry = _ENGINES.get(str(self.engine_path))
            if entry is not None and entry[0] is self._engine:
                entry[2] -= 1
                if entry[2] <= 0:
                    del _ENGINES[str(self.engine_path)]

    # -- lifecycle ------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            raise BackendError(
                "tensorrt backend needs the 'tensorrt' Python package; onnxruntime works without it"
            ) from exc
        import torch

        if not torch.cuda.is_available():
            raise BackendError(
                "tensorrt backend needs an NVIDIA GPU (torch.cuda.is_available() is False)"
            )
        self._dev = torch.device(self._device_str)
        if self._dev.index is None:
            self._dev = torch.device("cuda", 0)
        torch.cuda.set_device(self._dev)
        path = self.ensure_engine()
        try:
            self._engine = self._acquire_engine(path)
        except Exception as exc:  # corrupt / foreign engine: rebuild once, say why
            reason = f"cached engine failed to deserialise: {exc}"
            self.log(f"tensorrt: rebuilding {path.name}: {reason}")
            shapes = self._onnx_input_shapes()
            meta = self.current_meta(self._trt, shapes[image_input_name(shapes)])
            self._build(meta, ec.ensure_cache_dir(self.cache_dir), path.stem, shapes)
            self.build_reason = reason
            self._engine = self._acquire_engine(path)
        self._setup_context()

    def _setup_context(self) -> None:
        import torch

        trt, eng = self._trt, self._engine
        self._context = eng.create_execution_context()
        if self._context is None:
            raise BackendError("tensorrt: cannot create an execution context (GPU memory?)")
        self._stream = torch.cuda.Stream(device=self._dev)
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            shape = tuple(eng.get_tensor_shape(name))
            is_input = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input and any(d < 0 for d in shape):
                shape = tuple(self._onnx_input_shapes()[name])
                self._context.set_input_shape(name, shape)
            if not is_input and any(d < 0 for d in shape):
                shape = tuple(self._context.get_tensor_shape(name))
            tdt = _torch_dtype(trt, eng.get_tensor_dtype(name))
            dev = torch.empty(shape, dtype=tdt, device=self._dev)
            host = torch.empty(shape, dtype=tdt, pin_memory=True)
            self._dev_bufs[name], self._host_bufs[name] = dev, host
            self._context.set_tensor_address(name, int(dev.data_ptr()))
            spec = TensorSpec(name, shape, np.dtype(host.numpy().dtype))
            (self.input_specs if is_input else self.output_specs)[name] = spec

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._context = None
        self._release_engine()
        self._engine = self._stream = None
        self._dev_bufs.clear()
        self._host_bufs.clear()

    # -- inference ------------------------------------------------------------------------
    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        for name, spec in self.input_specs.items():
            self._host_bufs[name].numpy()[...] = np.asarray(inputs[name], dtype=spec.dtype)
        with torch.cuda.stream(self._stream):
            for name in self.input_specs:
                self._dev_bufs[name].copy_(self._host_bufs[name], non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
            for name in self.output_specs:
                self._host_bufs[name].copy_(self._dev_bufs[name], non_blocking=True)
        self._stream.synchronize()
        out = {}
        for name, spec in self.output_specs.items():
            arr = self._host_bufs[name].numpy().copy()
            out[name] = arr.astype(np.int32) if arr.dtype == np.int64 else arr
        return out

    @property
    def device(self) -> str:
        if self._dev is None:
            return self._device_str
        import torch

        return f"{self._dev} ({torch.cuda.get_device_name(self._dev)}, TensorRT {self._trt.__version__} {self.settings.precision})"  # noqa: E501
