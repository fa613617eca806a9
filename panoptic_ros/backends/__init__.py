"""Inference backends behind one small protocol (see base.Backend).

``create_backend(name, info, ...)`` is the only entry point the pipeline and the node use.
Names: ``onnxruntime`` (CPU default, CUDA EP on request), ``torch`` (CPU or CUDA by ``device``),
``tensorrt`` (engine built from the ONNX and cached on disk), ``auto`` (tensorrt > torch-cuda >
onnxruntime, logged). An explicit name never falls back: if it cannot work here a
``BackendError`` says what is missing and which backend would work.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panoptic_ros.backends.base import Backend, BackendError, ModelSource, TensorSpec

BACKEND_NAMES = ("auto", "onnxruntime", "torch", "tensorrt")
#: preference order of ``auto`` (``torch`` only counts when CUDA is available)
AUTO_ORDER = ("tensorrt", "torch-cuda", "onnxruntime")

__all__ = [
    "Backend",
    "BackendError",
    "TensorSpec",
    "ModelSource",
    "BACKEND_NAMES",
    "AUTO_ORDER",
    "create_backend",
    "availability",
]

_log = logging.getLogger("panoptic_ros.backends")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> tuple[bool, str]:
    if not _has_module("torch"):
        return False, "the 'torch' package is not installed"
    import torch

    if not torch.cuda.is_available():
        return (
            False,
            f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)",
        )
    return True, f"CUDA GPU {torch.cuda.get_device_name(0)}"


def availability(probe_cuda: bool = True) -> dict[str, tuple[bool, str]]:
    """Which backends can run here: name -> (ok, reason). Cheap: imports torch at most, and not
    with ``probe_cuda=False`` (then tensorrt and torch-cuda are reported unavailable, not probed):
    an explicit onnxruntime backend must not load torch just to learn it will not use it."""
    cuda_ok, cuda_why = _cuda_available() if probe_cuda else (False, "CUDA not probed")
    out: dict[str, tuple[bool, str]] = {}
    if not _has_module("tensorrt"):
        out["tensorrt"] = (False, "the 'tensorrt' Python package is not installed")
    elif not cuda_ok:
        out["tensorrt"] = (False, f"needs an NVIDIA GPU visible to torch: {cuda_why}")
    else:
        out["tensorrt"] = (True, cuda_why)
    out["torch-cuda"] = (cuda_ok, cuda_why)
    out["torch"] = (
        _has_module("torch"),
        "torch installed" if _has_module("torch") else "the 'torch' package is not installed",
    )
    out["onnxruntime"] = (
        (True, "onnxruntime installed")
        if _has_module("onnxruntime")
        else (False, "the 'onnxruntime' package is not installed")
    )
    return out


def _working_alternatives(avail: dict[str, tuple[bool, str]], exclude: str) -> str:
    names = [n for n in ("onnxruntime", "torch") if n != exclude and avail.get(n, (False, ""))[0]]
    return (
        (", ".join(names) + (" is" if len(names) == 1 else " are") + " available")
        if names
        else "no other backend is available"
    )


PRECISIONS = ("fp32", "fp16", "int8")


def has_qdq(path: str | Path) -> bool:
    """True when the ONNX graph at ``path`` is already quantized (QuantizeLinear/DequantizeLinear
    nodes): such a graph runs as is for int8 (ONNX Runtime; TensorRT explicit quantization)."""
    from panoptic_ros.backends.onnx_ops import load_model

    try:
        model = load_model(Path(path))
    except ValueError as exc:
        raise BackendError(str(exc)) from exc
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _onnx_path(info: Any, batch: int, precision: str | None = None) -> Path:
    """The graph a backend opens: the fp32 export, or with ``precision="int8"`` the model's QDQ
    graph (a bare .onnx is taken as given: the caller checks whether it is quantized)."""
    if isinstance(info, (str, Path)):
        p = Path(info)
        if p.suffix.lower() != ".onnx":
            raise BackendError(f"expected a ModelInfo or an .onnx file, got {p}")
        return p
    try:
        if precision == "int8":
            return Path(info.onnx_file(batch, precision="int8"))
        return Path(info.onnx_file(batch))
    except BackendError:
        raise
    except Exception as exc:  # ModelError, export failures
        raise BackendError(
            f"cannot get an ONNX file for model {_model_name(info)!r}: {exc}"
        ) from exc


def _is_onnx_only(info: Any) -> bool:
    """A bare .onnx path or a ModelInfo of a user ONNX file (no torch weights)."""
    return isinstance(info, (str, Path)) or getattr(info, "onnx_path", None) is not None


def _model_name(info: Any) -> str:
    if isinstance(info, (str, Path)):
        return Path(info).stem
    return str(
        getattr(info, "name", None) or Path(str(getattr(info, "path", "model"))).name or "model"
    )


def create_backend(
    name: str,
    info: ModelSource | str | Path,
    *,
    batch: int = 1,
    device: str | None = None,
    threads: int = 0,
    precision: str | None = "fp32",
    cache_dir: str | Path | None = None,
    workspace_mb: int | None = None,
    cuda_graph: bool = False,
    logger: Callable[[str], None] | None = None,
    **options: Any,
) -> Backend:
    """Build (not open) the backend ``name`` for model ``info`` (a ModelSource such as
    ``families.model_store.ModelInfo``, or an .onnx path).

    Options (each backend rejects what it cannot honour rather than ignoring it):
      batch        static batch of the model input (cameras per ``infer``)
      device       "cpu" | "cuda" | "cuda:N"; default cpu for onnxruntime/torch, cuda:0 for tensorrt
      threads      intra-op CPU threads (0 = library default)
      precision    "fp32" (default) | "fp16" (torch on CUDA, tensorrt) | "int8" (onnxruntime and
                   tensorrt: the model's QDQ graph, families/quantize.py)
      cache_dir    tensorrt engine cache (default: <engine_cache.default_cache_dir()>/engines)
      workspace_mb tensorrt builder workspace limit
      cuda_graph   torch on CUDA: capture one CUDA graph for the static shape
      logger       callable(str) for progress / decisions; default logging "panoptic_ros.backends"
    Raises BackendError naming what is missing when the backend cannot work here.
    """
    log = logger or _log.info
    if name not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if int(batch) < 1:
        raise BackendError(f"batch must be >= 1, got {batch}")
    if precision is not None:
        precision = str(precision).strip().lower()
        if precision not in PRECISIONS:
            raise BackendError(
                f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
    avail = availability(probe_cuda=name != "onnxruntime")
    if name == "auto":
        name, device, precision = _choose_auto(avail, info, device, precision, log)
    common = dict(
        batch=int(batch),
        device=device,
        threads=threads,
        precision=precision,
        cache_dir=cache_dir,
        workspace_mb=workspace_mb,
        cuda_graph=cuda_graph,
        log=log,
        options=options,
    )
    if name == "onnxruntime":
        return _make_onnxruntime(info, avail, **common)
    if name == "torch":
        return _make_torch(info, avail, **common)
    return _make_tensorrt(info, avail, **common)


def _choose_auto(avail, info, device, precision, log) -> tuple[str, str | None, str | None]:
    skipped = []
    is_onnx = _is_onnx_only(info)
    for cand in AUTO_ORDER:
        ok, why = avail[cand]
        if cand == "torch-cuda" and ok and is_onnx:
            ok, why = False, "torch needs a model directory with weights, not a bare .onnx file"
        if cand != "onnxruntime" and device == "cpu":
            ok, why = False, "device 'cpu' was requested"
        if cand == "torch-cuda" and ok and precision == "int8":
            ok, why = False, "int8 runs on tensorrt or onnxruntime (QDQ graph), not torch"
        if ok:
            chosen = "torch" if cand == "torch-cuda" else cand
            if cand == "torch-cuda" and device is None:
                device = "cuda"
            if cand == "onnxruntime" and precision not in (None, "fp32", "int8"):
                skipped.append(f"precision {precision} not supported by onnxruntime: using fp32")
                precision = None
            if cand == "onnxruntime" and precision == "int8" and is_onnx:
                if not has_qdq(_onnx_path(info, 1)):
                    skipped.append("int8: this .onnx has no Q/DQ nodes: using fp32")
                    precision = None
            if cand == "onnxruntime" and device is None:
                device = "cpu"
            msg = f"backend auto -> {chosen}" + (f" ({why})" if cand != "onnxruntime" else "")
            if skipped:
                msg += "; skipped: " + "; ".join(skipped)
            log(msg)
            return chosen, device, precision
        skipped.append(f"{cand}: {why}")
    raise BackendError("backend auto found nothing usable: " + "; ".join(skipped))


def _check_common(name: str, threads: int, workspace_mb, cuda_graph: bool, options: dict) -> None:
    if options:
        raise BackendError(f"{name} backend: unknown option(s) {sorted(options)}")
    if int(threads) < 0:
        raise BackendError(f"{name} backend: threads must be >= 0, got {threads}")


def _make_onnxruntime(
    info,
    avail,
    *,
    batch,
    device,
    threads,
    precision,
    cache_dir,
    workspace_mb,
    cuda_graph,
    log,
    options,
):
    _check_common("onnxruntime", threads, workspace_mb, cuda_graph, options)
    if not avail["onnxruntime"][0]:
        raise BackendError(
            f"onnxruntime backend needs the 'onnxruntime' package (pip install onnxruntime); {_working_alternatives(avail, 'onnxruntime')}"  # noqa: E501
        )
    if precision not in (None, "fp32", "int8"):
        raise BackendError(
            f"onnxruntime backend runs fp32 or int8 (precision {precision!r}); use tensorrt or torch for fp16"  # noqa: E501
        )
    if cuda_graph:
        raise BackendError("onnxruntime backend: cuda_graph is a torch-backend option")
    from panoptic_ros.backends.onnxruntime import OnnxRuntimeBackend

    path = _onnx_path(info, batch, precision)
    if precision == "int8" and _is_onnx_only(info) and not has_qdq(path):
        raise BackendError(
            f"onnxruntime int8 needs a quantized (QDQ) graph: {path.name} has no QuantizeLinear "
            "nodes; give a model directory (its int8 graph is shipped or generated) or a QDQ .onnx"
        )
    return OnnxRuntimeBackend(path, threads=threads, device=device or "cpu")


def _make_torch(
    info,
    avail,
    *,
    batch,
    device,
    threads,
    precision,
    cache_dir,
    workspace_mb,
    cuda_graph,
    log,
    options,
):
    _check_common("torch", threads, workspace_mb, cuda_graph, options)
    if not avail["torch"][0]:
        raise BackendError(
            f"torch backend needs the 'torch' package; {_working_alternatives(avail, 'torch')}"
        )
    if _is_onnx_only(info):
        raise BackendError(
            f"torch backend needs a model directory with weights, not an ONNX file ({_model_name(info)}); "
            "use onnxruntime or tensorrt for ONNX files"
        )
    dev = device or "cpu"
    if dev.startswith("cuda") and not avail["torch-cuda"][0]:
        raise BackendError(
            f"torch backend: device {dev!r} requested but {avail['torch-cuda'][1]}; use device='cpu' or backend 'onnxruntime'"  # noqa: E501
        )
    from panoptic_ros.backends.torch import TorchBackend

    return TorchBackend(
        info,
        batch=batch,
        device=dev,
        threads=threads,
        precision=precision or "fp32",
        cuda_graph=cuda_graph,
    )


def _make_tensorrt(
    info,
    avail,
    *,
    batch,
    device,
    threads,
    precision,
    cache_dir,
    workspace_mb,
    cuda_graph,
    log,
    options,
):
    contexts = options.pop("contexts", None)
    calibration = options.pop("calibration", None)
    _check_common("tensorrt", threads, workspace_mb, cuda_graph, options)
    ok, why = avail["tensorrt"]
    if not ok:
        raise BackendError(
            f"tensorrt backend needs the 'tensorrt' Python package and an NVIDIA GPU ({why}); "
            f"{_working_alternatives(avail, 'tensorrt')}"
        )
    if cuda_graph:
        raise BackendError("tensorrt backend: cuda_graph is a torch-backend option")
    if device is not None and not str(device).startswith("cuda"):
        raise BackendError(f"tensorrt backend runs on CUDA devices only, not {device!r}")
    from panoptic_ros.backends.engine_cache import DEFAULT_WORKSPACE_MB
    from panoptic_ros.backends.tensorrt import TensorRTBackend

    if contexts not in (None, 1):
        raise BackendError(
            "tensorrt backend: create one backend per camera (they share the engine) instead of contexts=N"
        )
    path = _onnx_path(info, batch, precision)
    explicit = precision == "int8" and has_qdq(path)
    if explicit and calibration is not None:
        raise BackendError(
            f"tensorrt backend: {path.name} is already quantized (Q/DQ nodes carry the scales); "
            "calibration applies only to int8 of a plain fp32 .onnx"
        )
    return TensorRTBackend(
        path,
        model_name=_model_name(info),
        info=None if isinstance(info, (str, Path)) else info,
        device=device or "cuda:0",
        precision=precision or "fp32",
        cache_dir=cache_dir,
        workspace_mb=workspace_mb or DEFAULT_WORKSPACE_MB,
        calibration=calibration,
        explicit_quantization=explicit,
        log=log,
    )
