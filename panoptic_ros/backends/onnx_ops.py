"""List the operators of an ONNX file and check them against TensorRT's ONNX parser support.

The support table is data transcribed from onnx-tensorrt ``docs/operators.md`` for
TensorRT 10.15 (parser opset range 9..24). Three kinds of entries:

* not in ``UNSUPPORTED`` and no restriction: supported;
* in ``RESTRICTIONS``: supported with a documented restriction; the restrictions we can
  check statically (TopK's K, Resize modes, pooling dilations / indices output, constant
  axes, ScatterND reduction, Dropout training) are checked per node and a violated one
  makes that op unsupported; the rest are reported as notes;
* in ``UNSUPPORTED`` or outside the default ONNX domain (needs a plugin): unsupported.

Ops the table does not list at all (newer than the table) are reported as ``unknown`` and
counted as unsupported, so the check errs on the side of telling the user.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: where the table below comes from
TENSORRT_TABLE_VERSION = "10.15"
TENSORRT_OPSET_RANGE = (9, 24)
TABLE_SOURCE = "onnx-tensorrt docs/operators.md (TensorRT 10.15)"

#: ops the parser does not import (need a plugin or a graph rewrite)
UNSUPPORTED = frozenset(
    """AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad
    Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger
    MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
    OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt
    SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
    SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit
    TfIdfVectorizer Unique""".split()
)

#: supported ops without documented restrictions
SUPPORTED = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh BatchNormalization BlackmanWindow
    Cast CastLike Ceil Celu Clip Concat ConstantOfShape Conv ConvTranspose Cos Cosh DepthToSpace Div
    Einsum Elu Equal Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GroupNormalization
    HammingWindow HannWindow HardSigmoid HardSwish Identity ImageScaler InstanceNormalization IsInf
    IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax LRN LpNormalization MatMul Max Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not Or Pad
    ParametricSoftplus Pow PRelu RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
    Reciprocal Relu Reshape ReverseSequence RMSNormalization RoiAlign Round ScaledTanh Scan Scatter
    ScatterElements Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
    SpaceToDepth Split Sqrt Sub Sum Tan Tanh ThresholdedRelu Tile Transpose Trilu Upsample Where Xor""".split()
)

_REDUCE_NOTE = "`axes` must be an initializer"
#: supported ops with a documented restriction (short paraphrase of the table's note)
RESTRICTIONS: dict[str, str] = {
    "Attention": "Q/K/V and attn_mask must be 4D; past_key/past_value/cache outputs unsupported",
    "AveragePool": "2D or 3D pooling only; `dilations` must be empty or all ones",
    "Constant": "sparse_value / value_string(s) attributes unsupported",
    "CumSum": "`axis` must be a build-time constant",
    "DeformConv": "1D/2D spatial input only; symmetric pads",
    "DequantizeLinear": "`x_zero_point` must be zero",
    "Dropout": "`is_training` must be an initializer evaluating to False",
    "EyeLike": "input must have static dimensions",
    "GridSample": "4D input only",
    "GRU": "bidirectional: same activations both directions",
    "Hardmax": "`axis` dimension must be a build-time constant",
    "If": "both branches' outputs must have the same rank and different names",
    "LayerNormalization": "only the first output Y is supported",
    "Loop": "scan output length cannot be dynamic; carried shapes constant across iterations",
    "LpPool": "`dilations` must be empty or all ones",
    "LSTM": "bidirectional: same activations; input_forget=0; layout=0",
    "MaxPool": "2D or 3D pooling only; `Indices` output unsupported; `dilations` empty or all ones",
    "OneHot": "`depth` must be a build-time constant",
    "QuantizeLinear": "`y_zero_point` must be 0",
    "ReduceL1": _REDUCE_NOTE,
    "ReduceL2": _REDUCE_NOTE,
    "ReduceLogSum": _REDUCE_NOTE,
    "ReduceLogSumExp": _REDUCE_NOTE,
    "ReduceMax": _REDUCE_NOTE,
    "ReduceMean": _REDUCE_NOTE,
    "ReduceMin": _REDUCE_NOTE,
    "ReduceProd": _REDUCE_NOTE,
    "ReduceSum": _REDUCE_NOTE,
    "ReduceSumSquare": _REDUCE_NOTE,
    "Resize": "modes nearest/linear; coordinate modes half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, "
    "asymmetric, align_corners; nearest modes floor/ceil/round_prefer_*; no antialias; aspect policy stretch",
    "RNN": "bidirectional: same activations both directions",
    "RotaryEmbedding": "`position_ids` must be INT64",
    "ScatterND": "`reduction` other than none unsupported",
    "Squeeze": "`axes` must be resolvable to a constant",
    "STFT": "`frame_step` and `window` must be initializers; real input only",
    "TensorScatter": "past_cache/update must be 4D; axis must be -2",
    "TopK": "`sorted` must be 1; `K` must be less than 3840 (and a build-time constant)",
    "Unsqueeze": "`axes` must be resolvable to a constant",
}

#: general data-type notes from the same document
DTYPE_NOTES = (
    "TensorRT 10 imports INT64 natively; TensorRT 8.x casts INT64 down to INT32 (values clamped to +-INT_MAX)",
    "DOUBLE is cast down to FLOAT; UINT8 only as network input/output",
)

TOPK_MAX_K = 3840
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORD = {
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass
class OpReport:
    op: str
    domain: str
    count: int
    status: str  # supported | restricted | unsupported | unknown
    notes: list[str] = field(default_factory=list)

    @property
    def is_unsupported(self) -> bool:
        return self.status in ("unsupported", "unknown")


@dataclass
class OnnxOpsReport:
    path: str
    opset: int | None
    ops: list[OpReport]
    problems: list[str]  # graph-level problems (opset out of range)
    notes: list[str]

    @property
    def n_ops(self) -> int:
        return len(self.ops)

    @property
    def n_nodes(self) -> int:
        return sum(o.count for o in self.ops)

    @property
    def unsupported(self) -> list[OpReport]:
        return [o for o in self.ops if o.is_unsupported]

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.problems


def tensorrt_support(op: str, domain: str = "") -> tuple[str, str]:
    """(status, note) for one op type by the table alone (no per-node checks)."""
    if domain not in ("", "ai.onnx"):
        return "unsupported", f"custom domain {domain!r} needs a TensorRT plugin"
    if op in UNSUPPORTED:
        return "unsupported", f"not supported by the TensorRT {TENSORRT_TABLE_VERSION} ONNX parser"
    if op in RESTRICTIONS:
        return "restricted", RESTRICTIONS[op]
    if op in SUPPORTED:
        return "supported", ""
    return "unknown", f"not in the TensorRT {TENSORRT_TABLE_VERSION} support table"


# -- per-node checks --------------------------------------------------------------------
class _Graphs:
    """Constant values visible to nodes: initializers and Constant node outputs (all graphs)."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self._np = numpy_helper
        self.consts: dict[str, Any] = {}
        for g in _all_graphs(model.graph):
            for init in g.initializer:
                self.consts[init.name] = init
            for n in g.node:
                if n.op_type == "Constant" and n.output:
                    for a in n.attribute:
                        if a.name == "value":
                            self.consts[n.output[0]] = a.t
                        elif a.name in ("value_int", "value_ints"):
                            self.consts[n.output[0]] = a

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def value(self, name: str):
        from onnx import helper

        t = self.consts.get(name)
        if t is None:
            return None
        if hasattr(t, "dims"):
            return self._np.to_array(t)
        return helper.get_attribute_value(t)


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def check_node(node, consts: _Graphs) -> list[str]:
    """Violations of checkable restrictions for one node (empty list: fine)."""
    op, a, bad = node.op_type, _attrs(node), []
    inputs = list(node.input)
    if op == "TopK":
        if int(a.get("sorted", 1)) != 1:
            bad.append("TopK sorted=0 unsupported")
        k_name = inputs[1] if len(inputs) > 1 else None
        if k_name is None:  # opset < 10: k attribute
            k = a.get("k")
        elif consts.is_const(k_name):
            k = consts.value(k_name)
        else:
            k = None
            bad.append("TopK K is not a build-time constant")
        if k is not None:
            kv = int(np.asarray(k).reshape(-1)[0])
            if kv >= TOPK_MAX_K:
                bad.append(f"TopK K={kv} >= {TOPK_MAX_K}")
    elif op == "Resize":
        mode = _s(a.get("mode", "nearest"))
        if mode not in _RESIZE_MODES:
            bad.append(f"Resize mode {mode!r} unsupported")
        ctm = _s(a.get("coordinate_transformation_mode", "half_pixel"))
        if ctm not in _RESIZE_COORD:
            bad.append(f"Resize coordinate_transformation_mode {ctm!r} unsupported")
        nm = _s(a.get("nearest_mode", "round_prefer_floor"))
        if mode == "nearest" and nm not in _RESIZE_NEAREST:
            bad.append(f"Resize nearest_mode {nm!r} unsupported")
        if int(a.get("antialias", 0)):
            bad.append("Resize antialias unsupported")
        if _s(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            bad.append("Resize keep_aspect_ratio_policy other than stretch unsupported")
    elif op in ("MaxPool", "AveragePool", "LpPool"):
        if any(int(d) != 1 for d in a.get("dilations", [])):
            bad.append(f"{op} dilations {list(a['dilations'])} unsupported")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            bad.append("MaxPool Indices output unsupported")
        ks = a.get("kernel_shape")
        if op != "LpPool" and ks is not None and len(ks) not in (2, 3):
            bad.append(f"{op} {len(ks)}D pooling unsupported (2D/3D only)")
    elif op == "ScatterND":
        if _s(a.get("reduction", "none")) != "none":
            bad.append(f"ScatterND reduction={_s(a['reduction'])!r} unsupported")
    elif op == "Dropout":
        if len(inputs) > 2 and inputs[2]:
            v = consts.value(inputs[2]) if consts.is_const(inputs[2]) else None
            if v is None or bool(v):
                bad.append("Dropout training_mode must be a constant False")
    return bad


def _all_graphs(graph):
    yield graph
    for n in graph.node:
        for a in n.attribute:
            if a.type == a.GRAPH:
                yield from _all_graphs(a.g)
            elif a.type == a.GRAPHS:
                for g in a.graphs:
                    yield from _all_graphs(g)


def _nodes(graph):
    for g in _all_graphs(graph):
        yield from g.node


def load_model(path: str | Path):
    """Load an ONNX file (structure only; external weights are not read). ValueError if invalid."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"ONNX file not found: {p}")
    try:
        return onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ValueError(f"{p} is not a readable ONNX model: {exc}") from exc


def op_counts(model) -> Counter:
    """Counter of (domain, op_type) over every node, subgraphs included."""
    return Counter((n.domain or "", n.op_type) for n in _nodes(model.graph))


def analyze(model_or_path) -> OnnxOpsReport:
    """Full report for an ONNX model (``onnx.ModelProto``) or path."""
    model = load_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    path = str(model_or_path) if isinstance(model_or_path, (str, Path)) else "<model>"
    consts = _Graphs(model)
    violations: dict[tuple[str, str], list[str]] = {}
    for n in _nodes(model.graph):
        if (n.domain or "") in ("", "ai.onnx"):
            for v in check_node(n, consts):
                violations.setdefault((n.domain or "", n.op_type), []).append(
                    f"{n.name or '<unnamed>'}: {v}"
                )
    ops = []
    for (domain, op), count in sorted(op_counts(model).items(), key=lambda kv: (-kv[1], kv[0][1])):
        status, note = tensorrt_support(op, domain)
        notes = [note] if note else []
        bad = violations.get((domain, op))
        if bad:
            status = "unsupported"
            notes += sorted(set(bad))[:5] + (
                [f"... {len(set(bad)) - 5} more"] if len(set(bad)) > 5 else []
            )
        ops.append(OpReport(op=op, domain=domain, count=count, status=status, notes=notes))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    problems = []
    lo, hi = TENSORRT_OPSET_RANGE
    if opset is not None and not lo <= opset <= hi:
        problems.append(
            f"opset {opset} outside TensorRT {TENSORRT_TABLE_VERSION}'s parser range {lo}..{hi}"
        )
    notes = []
    if _uses_int64(model):
        notes.append(DTYPE_NOTES[0])
    return OnnxOpsReport(path=path, opset=opset, ops=ops, problems=problems, notes=notes)


def _uses_int64(model) -> bool:
    from onnx import TensorProto

    vis = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    if any(v.type.tensor_type.elem_type == TensorProto.INT64 for v in vis):
        return True
    return any(
        i.data_type == TensorProto.INT64 for g in _all_graphs(model.graph) for i in g.initializer
    )


def format_report(report: OnnxOpsReport) -> str:
    """Human-readable table (one line per op type)."""
    width = max([len(o.op) for o in report.ops] + [2])
    lines = [
        f"{report.path}: opset {report.opset}, {report.n_nodes} nodes, {report.n_ops} op types "
        f"(checked against {TABLE_SOURCE})"
    ]
    for o in report.ops:
        name = f"{o.domain}::{o.op}" if o.domain else o.op
        flag = {
            "supported": "ok",
            "restricted": "ok*",
            "unsupported": "UNSUPPORTED",
            "unknown": "UNKNOWN",
        }[o.status]
        line = f"  {name:<{width}}  {o.count:>5}  {flag}"
        if o.notes:
            line += "  " + "; ".join(o.notes)
        lines.append(line)
    lines += [f"  problem: {p}" for p in report.problems]
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def ort_load_error(path: str | Path) -> str | None:
    """None when ONNX Runtime (CPU) can open ``path``, else its error in one line.

    The op table says what TensorRT's parser accepts; this says whether the graph runs at all on
    the default backend: e.g. the TorchScript export of HF Mask2Former passes the op table but
    ONNX Runtime has no kernel for its float64 GridSample(16)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / NotImplemented / InvalidGraph types
        return " ".join(str(exc).split())[:600]
    return None
