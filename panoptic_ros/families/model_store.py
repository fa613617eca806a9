"""Model directories and user ONNX files -> ``ModelInfo``; ONNX export cache.

A model is either
- a directory with ``weights.safetensors`` (torch state dict) + ``metadata.json`` (see
  docs/ARCHITECTURE.md "Model directory"), e.g. the package's ``models/default``; or
- an ``.onnx`` file honouring the ONNX contract, with its taxonomy in a sibling
  ``metadata.json`` / ``classes.yaml`` (else the default taxonomy).

Weights are only ever read with safetensors (no pickle, no code execution).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoptic_ros.backends import engine_cache as ec
from panoptic_ros.core.package_files import find
from panoptic_ros.core.taxonomy import Taxonomy, TaxonomyError

WEIGHTS_FILE = "weights.safetensors"
METADATA_FILE = "metadata.json"
DEFAULT_INPUT_SIZE = (240, 320)
DEFAULT_TOP_K = 32
#: centre NMS window of the exported graph when metadata has no "nms_kernel"
DEFAULT_NMS_KERNEL = 11


class ModelError(ValueError):
    """A model directory / file is missing, truncated, garbage or breaks the contract."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything needed to run a model. ``onnx_path`` is set for user ONNX files, None for
    weight directories (``resolve_onnx`` finds or exports their ONNX)."""

    directory: Path
    onnx_path: Path | None
    taxonomy: Taxonomy
    input_size: tuple[int, int]
    top_k: int
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def weights_path(self) -> Path | None:
        return None if self.onnx_path is not None else self.directory / WEIGHTS_FILE

    @property
    def nms_kernel(self) -> int:
        return int(self.metadata.get("nms_kernel", DEFAULT_NMS_KERNEL))

    @property
    def name(self) -> str:
        return self.onnx_path.name if self.onnx_path is not None else self.directory.name

    # backends.base.ModelSource: how a backend gets this model without importing the store
    def onnx_file(self, batch: int = 1, precision: str = "fp32") -> Path:
        if precision == "int8":  # the QDQ graph (families/quantize.py: shipped or generated)
            from panoptic_ros.families.quantize import resolve_int8_onnx

            return resolve_int8_onnx(self, batch=batch)
        return resolve_onnx(self, batch=batch)

    def torch_module(self):
        return load_torch_model(self)


def default_model_dir() -> Path:
    """models/default from the source tree, else share/panoptic_ros/models/default (ament index)."""
    try:
        return find("models/default", lambda c: (c / METADATA_FILE).is_file())
    except FileNotFoundError as exc:
        raise ModelError(f"default model not found: {exc}") from None


def default_cache_dir() -> Path:
    """$PANOPTIC_ROS_CACHE or ~/.cache/panoptic_ros, created with mode 0o700."""
    return _private_dir(ec.cache_root())


def _private_dir(d: Path) -> Path:
    """Create ``d`` 0o700, tighten it if we own it and it is looser (others could swap cached graphs)."""
    try:
        return ec.ensure_cache_dir(d)
    except (ec.EngineCacheError, OSError) as exc:
        raise ModelError(f"cache directory {d}: {exc}") from exc


def load_model_info(model: str | Path = "default") -> ModelInfo:
    """Resolve ``model`` ("default", a model directory or an .onnx file) to a ModelInfo."""
    if isinstance(model, str) and model == "default":
        path = default_model_dir()
    else:
        path = Path(model).expanduser()
    if not path.exists():
        raise ModelError(
            f"model not found: {path} (give 'default', a model directory or an .onnx file)"
        )
    if path.is_dir():
        return _load_dir(path)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path)
    raise ModelError(f"{path}: not a model directory or an .onnx file")


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read metadata: {exc}") from exc
    except ValueError as exc:
        raise ModelError(f"{path}: metadata is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: metadata must be a JSON object")
    return data


def _taxonomy_from(meta: dict[str, Any], where: Path) -> Taxonomy:
    if "taxonomy" not in meta:
        raise ModelError(f"{where}: metadata has no 'taxonomy'")
    try:
        return Taxonomy.from_dict(meta["taxonomy"])
    except TaxonomyError as exc:
        raise ModelError(f"{where}: {exc}") from exc


def _input_size(meta: dict[str, Any], where: Path) -> tuple[int, int]:
    size = meta.get("input_size", list(DEFAULT_INPUT_SIZE))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: input_size must be [H, W], got {size!r}") from exc
    if h < 16 or w < 16:
        raise ModelError(f"{where}: input_size must be at least [16, 16], got {size!r}")
    return h, w


def _load_dir(d: Path) -> ModelInfo:
    meta_path = d / METADATA_FILE
    weights = d / WEIGHTS_FILE
    if not meta_path.is_file():
        raise ModelError(f"{d}: missing {METADATA_FILE}")
    if not weights.is_file():
        raise ModelError(f"{d}: missing {WEIGHTS_FILE}")
    meta = _read_metadata(meta_path)
    tax = _taxonomy_from(meta, meta_path)
    top_k = int(meta.get("top_k", DEFAULT_TOP_K))
    if top_k < 1:
        raise ModelError(f"{meta_path}: top_k must be >= 1, got {top_k}")
    _check_safetensors_header(weights)
    return ModelInfo(d.resolve(), None, tax, _input_size(meta, meta_path), top_k, meta)


def _check_safetensors_header(path: Path) -> None:
    """Cheap structural check (header length, JSON header, data size) naming the file and fault."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > 100 * 1024 * 1024:
                raise ModelError(f"{path}: not a safetensors file (implausible header length {n})")
            if n > size - 8:
                raise ModelError(
                    f"{path}: truncated safetensors file (header of {n} bytes, file has {size})"
                )
            header = json.loads(f.read(n))
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights: {exc}") from exc
    except ValueError as exc:
        raise ModelError(f"{path}: not a safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (header is not a JSON object)")
    end = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            end = max(end, int(v["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError) as exc:
            raise ModelError(f"{path}: corrupt safetensors header entry {k!r}") from exc
    if 8 + n + end > size:
        raise ModelError(
            f"{path}: truncated safetensors file (needs {8 + n + end} bytes, has {size})"
        )


def load_onnx_graph(path: Path, doing: str = "reading") -> Any:
    """The ``onnx.ModelProto`` of ``path`` without its external weights (graph and metadata
    only); ModelError naming the file when it is not ONNX, or what needed the missing package."""
    try:
        import onnx
    except ImportError as exc:
        raise ModelError(f"{doing} an ONNX model needs the 'onnx' package") from exc
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model: {exc}") from exc


def _load_onnx(path: Path) -> ModelInfo:
    """A user .onnx: check the contract's input/output names and static shapes."""
    m = load_onnx_graph(path, "checking")
    from onnx import TensorProto  # present: load_onnx_graph imported onnx

    def dims(vi) -> list[int]:
        return [
            d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
        ]

    inits = {i.name for i in m.graph.initializer}
    inputs = {i.name: i for i in m.graph.input if i.name not in inits}
    outputs = {o.name: o for o in m.graph.output}
    if "image" not in inputs:
        raise ModelError(
            f"{path}: ONNX input 'image' missing (has {sorted(inputs)}); contract: image float32 [B,3,H,W]"
        )
    if "center_threshold" not in inputs:
        raise ModelError(
            f"{path}: ONNX input 'center_threshold' missing (has {sorted(inputs)}); contract: float32 [1]"
        )
    for name in ("semantic", "instance", "center_score"):
        if name not in outputs:
            raise ModelError(f"{path}: ONNX output {name!r} missing (has {sorted(outputs)})")
    shape = dims(inputs["image"])
    if len(shape) != 4 or shape[1] != 3 or shape[2] < 16 or shape[3] < 16:
        raise ModelError(
            f"{path}: ONNX input 'image' has shape {shape}, contract needs static [B,3,H,W] with H,W >= 16"
        )
    if inputs["image"].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ModelError(f"{path}: ONNX input 'image' must be float32")
    ks = dims(outputs["center_score"])
    top_k = ks[1] if len(ks) == 2 and ks[1] > 0 else DEFAULT_TOP_K
    meta: dict[str, Any] = {}
    tax = None
    for cand in (path.with_suffix(".json"), path.parent / METADATA_FILE):
        if cand.is_file():
            meta = _read_metadata(cand)
            if "taxonomy" in meta:
                tax = _taxonomy_from(meta, cand)
                break
    if tax is None:
        ypath = path.parent / "classes.yaml"
        try:
            tax = Taxonomy.load(ypath) if ypath.is_file() else Taxonomy.default()
        except TaxonomyError as exc:
            raise ModelError(str(exc)) from exc
    meta = dict(meta, input_size=[shape[2], shape[3]], top_k=top_k, batch=shape[0])
    return ModelInfo(path.parent.resolve(), path.resolve(), tax, (shape[2], shape[3]), top_k, meta)


# -- torch ------------------------------------------------------------------------------------
def load_state_dict(path: Path) -> dict[str, Any]:
    """safetensors only; errors name the file and the fault."""
    _check_safetensors_header(path)
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise ModelError("loading weights needs the 'safetensors' package") from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError
        raise ModelError(f"{path}: corrupt safetensors weights: {exc}") from exc


def load_torch_model(info: ModelInfo, raw: bool = False):
    """torch.nn.Module in eval mode on the CPU.

    raw=True: PanopticNet (image -> semantic_logits, center_heatmap, center_offset).
    raw=False: the exported graph's module (image, center_threshold -> semantic, instance, center_score).
    """
    if info.weights_path is None:
        raise ModelError(
            f"{info.onnx_path}: a user ONNX model has no torch weights; use an ONNX backend"
        )
    from panoptic_ros.families.panoptic_export import build_export_module
    from panoptic_ros.families.panoptic_net import DEFAULT_MEAN, DEFAULT_STD, build_net

    meta = info.metadata
    try:
        net = build_net(
            info.taxonomy.num_classes,
            meta.get("arch"),
            mean=meta.get("mean", DEFAULT_MEAN),
            std=meta.get("std", DEFAULT_STD),
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{info.directory / METADATA_FILE}: bad 'arch': {exc}") from exc
    state = load_state_dict(info.weights_path)
    try:
        net.load_state_dict(state, strict=True)
    except (
        RuntimeError
    ) as exc:  # torch lists every mismatching tensor (kilobytes): keep it to one line
        raise ModelError(
            f"{info.weights_path}: weights do not match the architecture in "
            f"{info.directory / METADATA_FILE}: {_summarize_state_dict_error(exc)}"
        ) from exc
    net.eval()
    if raw:
        return net
    h, w = info.input_size
    return build_export_module(
        net, info.taxonomy.is_thing_lut()[:-1].tolist(), h, w, info.top_k, info.nms_kernel
    )


def _summarize_state_dict_error(exc: Exception, limit: int = 2) -> str:
    """torch's load_state_dict error (one line per tensor) -> '<n> problem(s), e.g. ...; ...'."""
    lines = [ln.strip().rstrip(".") for ln in str(exc).splitlines()[1:] if ln.strip()]
    if not lines:
        return " ".join(str(exc).split())[:300]
    shown = "; ".join(ln[:200] for ln in lines[:limit])
    more = f" (+{len(lines) - limit} more)" if len(lines) > limit else ""
    return f"{len(lines)} problem(s): {shown}{more}"


def onnx_cache_key(info: ModelInfo, batch: int = 1, raw: bool = False) -> str:
    from panoptic_ros.families.panoptic_export import DEFAULT_OPSET, EXPORTER_VERSION

    assert info.weights_path is not None
    parts = [
        ec.sha256_file(info.weights_path),
        json.dumps(info.metadata.get("arch"), sort_keys=True),
        json.dumps(info.taxonomy.to_dict(), sort_keys=True),
        f"{info.input_size[0]}x{info.input_size[1]}",
        f"b{batch}",
        f"k{info.top_k}",
        f"n{info.nms_kernel}",
        f"raw{int(raw)}",
        f"v{EXPORTER_VERSION}",
        f"o{DEFAULT_OPSET}",
    ]
    if "mean" in info.metadata or "std" in info.metadata:  # baked into the graph
        parts.append(json.dumps([info.metadata.get("mean"), info.metadata.get("std")]))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def shipped_onnx_name(
    info: ModelInfo, batch: int = 1, raw: bool = False, key: str | None = None
) -> str:
    """File name of an export shipped in the model directory beside its weights (as
    models/default ships its batch-1 graph): used when its key matches, so a robot running
    ONNX Runtime or TensorRT needs no torch. ``panoptic-ros export --ship`` writes it."""
    h, w = info.input_size
    key = key or onnx_cache_key(info, batch, raw)
    return f"model-{'raw-' if raw else ''}{h}x{w}-b{batch}-{key}.onnx"


def resolve_onnx(
    info: ModelInfo, batch: int = 1, cache_dir: str | Path | None = None, raw: bool = False
) -> Path:
    """Path to an ONNX file for ``info``.

    User .onnx: returned as is (its batch must match unless it is dynamic). Weight directory: the
    export shipped beside the weights when its key matches (``shipped_onnx_name``; no torch needed),
    else exported (needs torch) to ``cache_dir`` (default ``default_cache_dir()``) under a key of the
    weights' sha256, architecture, taxonomy, input size, batch, top_k and exporter version; written
    atomically and reused next time.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if info.onnx_path is not None:
        b = int(info.metadata.get("batch", -1))
        if b > 0 and b != batch:
            raise ModelError(f"{info.onnx_path}: ONNX has a static batch of {b}, {batch} requested")
        return info.onnx_path
    key = onnx_cache_key(info, batch, raw)
    shipped = info.directory / shipped_onnx_name(info, batch, raw, key)
    if shipped.is_file() and shipped.stat().st_size > 0:
        return shipped
    cache = _private_dir(Path(cache_dir)) if cache_dir is not None else default_cache_dir()
    out = (
        cache
        / f"{info.name}-{'raw-' if raw else ''}{info.input_size[0]}x{info.input_size[1]}-b{batch}-{key}.onnx"
    )
    if out.is_file() and out.stat().st_size > 0:
        return out
    from panoptic_ros.families.panoptic_export import export_onnx

    ec.remove_stale_temp_files(cache)  # partial exports of processes killed mid-write
    net = load_torch_model(info, raw=True)
    h, w = info.input_size
    export_onnx(
        net,
        info.taxonomy.is_thing_lut()[:-1].tolist(),
        out,
        height=h,
        width=w,
        batch=batch,
        top_k=info.top_k,
        nms_kernel=info.nms_kernel,
        raw=raw,
    )
    return out


def save_model(
    directory: str | Path,
    net,
    taxonomy: Taxonomy,
    *,
    input_size: tuple[int, int],
    top_k: int,
    arch: dict[str, Any],
    mean,
    std,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights.safetensors + metadata.json atomically into ``directory``."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {
        "taxonomy": taxonomy.to_dict(),
        "input_size": list(input_size),
        "mean": list(mean),
        "std": list(std),
        "top_k": int(top_k),
        "nms_kernel": DEFAULT_NMS_KERNEL,
        "arch": arch,
    }
    meta.update(extra or {})
    for name, writer in (
        (WEIGHTS_FILE, lambda p: save_file(state, p)),
        (METADATA_FILE, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n")),
    ):
        fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=d)
        os.close(fd)
        try:
            writer(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, d / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return d
