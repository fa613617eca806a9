"""INT8 models: static QDQ quantization of this project's ONNX graph, calibrated on synthetic scenes.

Why QDQ (QuantizeLinear/DequantizeLinear pairs around fp32 ops) and not ORT's QOperator format:
the same file runs in ONNX Runtime on CPU (which fuses each DQ -> Conv -> Q into an int8 kernel)
and is what TensorRT's *explicit quantization* builds from (it reads the scales from the graph
instead of running its own calibrator). TensorRT's rules fix the numeric choices: activations
and weights int8 (not uint8) with zero point 0 (symmetric), weights per output channel (axis 0
of a Conv weight). ``check_qdq_rules`` tests a graph against them without a GPU.

What is quantized: the network (nodes under ``/net/``) only. The exported post-processing
(``/post/``: ArgMax, centre NMS by MaxPool == x, TopK, grouping) compares values for equality and
ranks them; int8 there would create ties and reorder centres, and it costs little in fp32.
``QuantRecipe.exclude`` keeps further network nodes in fp32 (prefixes of node names); the
shipped recipe (``models/default/metadata.json`` "int8") was chosen by PQ on validation scenes
(docs/performance.md "INT8").

Calibration scenes come from ``synthetic.calibration_seeds`` (disjoint from training and
validation seeds) and are preprocessed by the model's own family (``prepare``), so calibration
sees exactly the tensors inference sees.

Ship or generate: ``resolve_int8_onnx`` returns the file shipped beside the weights when its name
(key over the fp32 graph's key and the recipe) matches, else quantizes into the model cache
(needs only onnx + onnxruntime, no torch when the fp32 graph is shipped), atomically, once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.backends import engine_cache as ec
from panoptic_ros.core import synthetic
from panoptic_ros.families.model_store import (
    ModelError,
    ModelInfo,
    default_cache_dir,
    onnx_cache_key,
    resolve_onnx,
)

#: bump when quantize_model changes the graph it writes for the same recipe (part of the key)
QUANTIZER_VERSION = "1"
METHODS = ("minmax", "entropy", "percentile")
#: int8-symmetric: TensorRT's rules; uint8-asymmetric: ORT's CPU-only alternative (Relu folds
#: into the zero point), not accepted by TensorRT
ACTIVATIONS = ("int8-symmetric", "uint8-asymmetric")
#: ONNX metadata_props key holding the recipe a QDQ graph was made with
RECIPE_PROP = "panoptic_ros.int8_recipe"
#: only nodes whose name starts with this are quantized (module docstring)
NETWORK_SCOPE = "/net/"


@dataclass(frozen=True)
class QuantRecipe:
    """How an INT8 graph is made (stored in metadata.json "int8" and in the graph's metadata).

    method: calibration (minmax | entropy | percentile); scenes: calibration scenes from
    ``calibration_seeds(scenes, seed_start)``; percentile: for method percentile;
    exclude: node-name substrings inside the network kept fp32; op_types: operator types quantized;
    activations: int8-symmetric (TensorRT) or uint8-asymmetric (ORT CPU only); moving_average:
    per-batch min/max averaged; quantize_bias: int32 bias Q/DQ (TensorRT takes int8 Q/DQ only).

    The defaults are the recipe measured best on 200 validation scenes (docs/performance.md
    "INT8"): MinMax with moving average (plain MinMax lost 0.011 PQ; ORT's Entropy gave the
    very same scales as MinMax here), the three heads' convs and their upsampling in fp32.
    """

    method: str = "minmax"
    scenes: int = 64
    seed_start: int = 0
    percentile: float = 99.999
    exclude: tuple[str, ...] = ("_head", "/net/Resize")
    op_types: tuple[str, ...] = ("Conv", "Add", "Resize", "Concat")
    activations: str = "int8-symmetric"
    moving_average: bool = True
    quantize_bias: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.activations not in ACTIVATIONS:
            raise ValueError(
                f"unknown activations {self.activations!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if int(self.scenes) < 1:
            raise ValueError(f"calibration needs at least 1 scene, got {self.scenes}")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "op_types", tuple(self.op_types))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["exclude"], d["op_types"] = list(self.exclude), list(self.op_types)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> QuantRecipe:
        """A recipe from metadata (unknown keys such as an "eval" record are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in dict(d or {}).items() if k in names})
        except (TypeError, ValueError) as exc:
            raise ModelError(f"bad int8 recipe {dict(d or {})!r}: {exc}") from exc


def model_recipe(info: ModelInfo) -> QuantRecipe:
    """The model directory's recipe (metadata.json "int8"), else the defaults."""
    return QuantRecipe.from_dict(info.metadata.get("int8"))


def int8_key(info: ModelInfo, batch: int, recipe: QuantRecipe) -> str:
    parts = [
        onnx_cache_key(info, batch),
        json.dumps(recipe.to_dict(), sort_keys=True),
        f"q{QUANTIZER_VERSION}",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def int8_onnx_name(info: ModelInfo, batch: int = 1, recipe: QuantRecipe | None = None) -> str:
    """File name of the QDQ graph (shipped beside the weights or in the cache)."""
    recipe = recipe or model_recipe(info)
    h, w = info.input_size
    return f"model-int8-{h}x{w}-b{batch}-{int8_key(info, batch, recipe)}.onnx"


def resolve_int8_onnx(
    info: ModelInfo,
    batch: int = 1,
    cache_dir: str | Path | None = None,
    recipe: QuantRecipe | None = None,
) -> Path:
    """Path to the INT8 (QDQ) graph of a weight directory (module docstring: ship or generate)."""
    if info.onnx_path is not None:
        if is_qdq_graph(info.onnx_path):
            return info.onnx_path
        raise ModelError(
            f"{info.onnx_path}: int8 needs a quantized (QDQ) graph or a model directory (weights "
            "+ metadata.json) to quantize from; this .onnx has no QuantizeLinear nodes"
        )
    recipe = recipe or model_recipe(info)
    name = int8_onnx_name(info, batch, recipe)
    shipped = info.directory / name
    if shipped.is_file() and shipped.stat().st_size > 0:
        why = _not_qdq(shipped)
        if why:  # a packaging mistake: say so rather than run fp32 or fail deep in a backend
            raise ModelError(
                f"{shipped}: the shipped int8 graph {why}; re-ship it (panoptic-ros export "
                "--int8 --ship) or remove it to have it generated into the cache"
            )
        return shipped
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = ec.ensure_cache_dir(cache)
    out = cache / f"{info.name}-{name}"
    if out.is_file() and out.stat().st_size > 0 and not _not_qdq(out):
        return out
    ec.remove_stale_temp_files(cache)
    return quantize_model(info, out, batch=batch, recipe=recipe)  # (re)made atomically


def _not_qdq(path: Path) -> str | None:
    """Why ``path`` is no usable int8 graph (None: it is a readable QDQ graph)."""
    try:
        return None if is_qdq_graph(path) else "has no QuantizeLinear nodes (an fp32 graph)"
    except ModelError as exc:
        return f"is unreadable ({exc})"


# -- calibration -------------------------------------------------------------------------------
def calibration_feeds(
    info: ModelInfo, batch: int, recipe: QuantRecipe
) -> Iterator[dict[str, np.ndarray]]:
    """Graph feeds for the calibration scenes, prepared by the model's family (as at inference)."""
    from panoptic_ros.families.factory import make_family
    from panoptic_ros.families.model_card import resolve_model

    family = make_family(resolve_model(info))
    h, w = info.input_size
    seeds = synthetic.calibration_seeds(recipe.scenes, recipe.seed_start)
    for i in range(0, len(seeds), batch):
        imgs = [
            synthetic.generate_scene(s, h, w, info.taxonomy).image for s in seeds[i : i + batch]
        ]
        prepared = family.prepare(imgs, batch)
        yield {k: np.array(v, copy=True) for k, v in prepared.feeds.items()}


def _reader(feeds: Iterator[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = feeds

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    return _Reader()


def _nodes_to_quantize(model, recipe: QuantRecipe) -> list[str]:
    return [
        n.name
        for n in model.graph.node
        if n.name.startswith(NETWORK_SCOPE)
        and n.op_type in recipe.op_types
        and not any(p in n.name for p in recipe.exclude)
    ]


def quantize_model(
    info: ModelInfo,
    out: str | Path,
    *,
    batch: int = 1,
    recipe: QuantRecipe | None = None,
    fp32_onnx: str | Path | None = None,
) -> Path:
    """Write the QDQ graph of ``info`` to ``out`` atomically and return it.

    int8 activations and weights, symmetric (zero point 0), weights per channel: TensorRT's
    explicit-quantization rules (module docstring), which ORT's CPU kernels run as well."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise ModelError(f"int8 quantization needs 'onnx' and 'onnxruntime': {exc}") from exc
    recipe = recipe or model_recipe(info)
    src = Path(fp32_onnx) if fp32_onnx is not None else resolve_onnx(info, batch)
    out = Path(out)
    model = onnx.load(str(src))
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[recipe.method]
    symmetric = recipe.activations == "int8-symmetric"
    extra: dict[str, Any] = {
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
        "DedicatedQDQPair": False,
        # TensorRT takes int8 Q/DQ only: biases stay fp32 (it fuses them into the int8 kernel)
        "QuantizeBias": bool(recipe.quantize_bias),
    }
    if recipe.moving_average:  # per-batch ranges averaged: single-scene outliers weigh less
        extra["CalibMovingAverage"] = True
    if recipe.method == "percentile":
        extra["CalibPercentile"] = float(recipe.percentile)
    nodes = _nodes_to_quantize(model, recipe)
    if not nodes:  # ORT reads an empty list as "every node", post-processing included
        raise ModelError(
            f"{src}: the int8 recipe (op_types {list(recipe.op_types)}, exclude "
            f"{list(recipe.exclude)}) selects no node under {NETWORK_SCOPE!r} to quantize"
        )
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        quantize_static(
            str(src),
            tmp,
            _reader(calibration_feeds(info, batch, recipe)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=method,
            nodes_to_quantize=nodes,
            extra_options=dict(extra, CalibTensorRangeSymmetric=symmetric),
            calibration_providers=["CPUExecutionProvider"],
        )
        q = onnx.load(tmp)
        prop = q.metadata_props.add()
        prop.key, prop.value = RECIPE_PROP, json.dumps(recipe.to_dict(), sort_keys=True)
        onnx.save(q, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# -- TensorRT's explicit-quantization rules, checked without TensorRT --------------------------
def check_qdq_rules(model_or_path: Any) -> list[str]:
    """Every way a graph breaks TensorRT's explicit-quantization rules (empty: it complies).

    Rules: every QuantizeLinear / DequantizeLinear has an int8 zero point equal to 0 (TensorRT
    supports symmetric int8 only); activation scales are scalars (per tensor); a Conv weight's
    DequantizeLinear is per channel on axis 0 with one scale per output channel."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    inits = {i.name: i for i in m.graph.initializer}
    consts = {
        n.output[0]: n.attribute[0].t
        for n in m.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    producers = {o: n for n in m.graph.node for o in n.output}
    problems: list[str] = []

    def tensor(name: str):
        t = inits.get(name) or consts.get(name)
        return None if t is None else (t.data_type, numpy_helper.to_array(t))

    for n in m.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(n.input) < 3 or not n.input[2]:
            problems.append(f"{n.name}: no zero point (defaults to uint8)")
            continue
        zp = tensor(n.input[2])
        if zp is None:
            problems.append(f"{n.name}: zero point {n.input[2]!r} is not a constant")
            continue
        if zp[0] != onnx.TensorProto.INT8:
            dtype = onnx.TensorProto.DataType.Name(zp[0])
            problems.append(f"{n.name}: zero point is {dtype}, TensorRT needs INT8")
        if np.any(zp[1] != 0):
            problems.append(f"{n.name}: zero point is not 0 (TensorRT quantization is symmetric)")
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        dq = producers.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue  # an fp32 Conv (excluded) is allowed
        w = tensor(dq.input[0])
        scale = tensor(dq.input[1])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if w is None or scale is None:
            problems.append(f"{n.name}: weight or scale of {dq.name} is not a constant")
            continue
        if scale[1].ndim != 1 or axis != 0 or scale[1].shape[0] != w[1].shape[0]:
            problems.append(
                f"{n.name}: weight quantization must be per channel on axis 0 "
                f"({w[1].shape[0]} scales), got axis {axis} with scale shape {list(scale[1].shape)}"
            )
    return problems


def is_qdq_graph(model_or_path: Any) -> bool:
    """True when the graph carries QuantizeLinear/DequantizeLinear nodes (explicit quantization)."""
    from panoptic_ros.families.model_store import load_onnx_graph

    m = (
        load_onnx_graph(Path(model_or_path))
        if isinstance(model_or_path, (str, Path))
        else model_or_path
    )
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)


def graph_recipe(model_or_path: Any) -> dict[str, Any] | None:
    """The recipe recorded in a QDQ graph's metadata (None when absent)."""
    from panoptic_ros.families.model_store import load_onnx_graph

    m = (
        load_onnx_graph(Path(model_or_path))
        if isinstance(model_or_path, (str, Path))
        else model_or_path
    )
    for p in m.metadata_props:
        if p.key == RECIPE_PROP:
            return json.loads(p.value)
    return None


def structure(model_or_path: Any) -> list[tuple[str, str]]:
    """(op_type, name) of every node: what "the same graph structure" compares."""
    import onnx

    m = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    return [(n.op_type, n.name) for n in m.graph.node]


__all__: Sequence[str] = (
    "QUANTIZER_VERSION",
    "METHODS",
    "QuantRecipe",
    "model_recipe",
    "int8_onnx_name",
    "resolve_int8_onnx",
    "quantize_model",
    "calibration_feeds",
    "check_qdq_rules",
    "is_qdq_graph",
    "graph_recipe",
    "structure",
)
