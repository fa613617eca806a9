"""``panoptic-ros check-onnx`` and panoptic_ros.backends.onnx_ops on the exported model and on
hand-built graphs with ops / attributes TensorRT cannot import."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from model_helpers import default_or_untrained_model_info  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from panoptic_ros.backends import onnx_ops  # noqa: E402
from panoptic_ros.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def exported_onnx(tmp_path_factory):
    """The default model's exported ONNX (or, until it lands, a same-architecture untrained export)."""
    from panoptic_ros.families.model_store import resolve_onnx

    cache = tmp_path_factory.mktemp("onnx_cache")
    info = default_or_untrained_model_info(tmp_path_factory)
    return resolve_onnx(info, batch=1, cache_dir=cache)


def _last_line(capsys) -> tuple[str, str]:
    out, err = capsys.readouterr()
    return out.strip().splitlines()[-1], err


def test_exported_model_has_no_unsupported_ops(exported_onnx, capsys):
    report = onnx_ops.analyze(exported_onnx)
    assert report.unsupported == [] and report.problems == [], onnx_ops.format_report(report)
    names = {o.op for o in report.ops}
    assert {"Conv", "TopK", "ArgMax", "MaxPool"} <= names
    rc = main(["check-onnx", str(exported_onnx)])
    last, err = _last_line(capsys)
    assert rc == 0
    assert last == f"ops={report.n_ops} unsupported=0 ort=ok family=ours"
    assert "TopK" in err and "TensorRT 10.15" in err  # table printed to stderr with its source


def _model(nodes, inputs, outputs, inits=(), opset=17, domains=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(g, opset_imports=ops)


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_unsupported_ops_flagged(tmp_path, capsys):
    x = _vi("x", [1, 3, 8, 8])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Relu", ["r"], ["r2"]),
        helper.make_node("Unique", ["r2"], ["u"]),  # unsupported
        helper.make_node("MyPlugin", ["r2"], ["p"], domain="com.example"),  # custom domain
        helper.make_node("Flatten", ["r2"], ["f"], axis=0),
        helper.make_node("TopK", ["f", "k"], ["tv", "ti"]),  # K too large
        helper.make_node("Resize", ["r2", "", "scales"], ["rz"], mode="cubic"),  # cubic unsupported
        helper.make_node("MaxPool", ["r2"], ["mp", "mpi"], kernel_shape=[3, 3]),  # Indices output
    ]
    inits = [
        numpy_helper.from_array(np.array([5000], np.int64), "k"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    outs = [_vi(n, None) for n in ("u", "p", "tv", "rz", "mp")]
    m = _model(nodes, [x], outs, inits, domains=["com.example"])
    path = tmp_path / "bad.onnx"
    onnx.save(m, str(path))

    rep = onnx_ops.analyze(path)
    by = {o.op: o for o in rep.ops}
    assert by["Relu"].count == 2 and by["Relu"].status == "supported"
    assert by["Unique"].status == "unsupported"
    assert by["MyPlugin"].status == "unsupported" and "plugin" in by["MyPlugin"].notes[0]
    assert by["TopK"].status == "unsupported" and any(
        "K=5000 >= 3840" in n for n in by["TopK"].notes
    )
    assert by["Resize"].status == "unsupported" and any("'cubic'" in n for n in by["Resize"].notes)
    assert by["MaxPool"].status == "unsupported" and any(
        "Indices" in n for n in by["MaxPool"].notes
    )
    assert by["Flatten"].status == "supported"
    assert {o.op for o in rep.unsupported} == {"Unique", "MyPlugin", "TopK", "Resize", "MaxPool"}

    rc = main(["check-onnx", str(path)])
    last, err = _last_line(capsys)
    assert rc == 1
    assert last.startswith(f"ops={rep.n_ops} unsupported=5 ")
    assert "unsupported by TensorRT: Unique x1" in err


def test_restricted_ops_within_limits_pass_and_subgraphs_are_scanned(tmp_path):
    x = _vi("x", [1, 64])
    then_g = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["y1"])], "then", [], [_vi("y1", None)]
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y2"])], "else", [], [_vi("y2", None)]
    )
    nodes = [
        helper.make_node(
            "Constant", [], ["k"], value=numpy_helper.from_array(np.array([8], np.int64))
        ),
        helper.make_node("TopK", ["x", "k"], ["v", "i"]),
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Greater", ["mx", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.float32), "zero")]
    m = _model(nodes, [x], [_vi("v", None), _vi("o", None)], inits)
    rep = onnx_ops.analyze(m)
    by = {o.op: o for o in rep.ops}
    assert by["TopK"].status == "restricted"  # K=8 from a Constant node: fine
    assert by["Unique"].status == "unsupported"  # found inside the If branch
    assert by["If"].status == "restricted"


def test_dynamic_topk_k_and_opset_out_of_range(tmp_path):
    x = _vi("x", [1, 64])
    kin = _vi("k", [1], TensorProto.INT64)
    m = _model(
        [helper.make_node("TopK", ["x", "k"], ["v", "i"])], [x, kin], [_vi("v", None)], opset=8
    )
    rep = onnx_ops.analyze(m)
    assert (
        rep.unsupported[0].op == "TopK"
        and "not a build-time constant" in rep.unsupported[0].notes[-1]
    )
    assert rep.problems and "opset 8 outside" in rep.problems[0]
    assert not rep.ok


def test_int64_note_and_unknown_op():
    x = _vi("x", [2], TensorProto.INT64)
    m = _model([helper.make_node("FancyNewOp", ["x"], ["y"])], [x], [_vi("y", None)])
    rep = onnx_ops.analyze(m)
    assert rep.ops[0].status == "unknown" and rep.unsupported
    assert any("INT64" in n for n in rep.notes)


def test_table_is_consistent():
    assert not (onnx_ops.SUPPORTED & onnx_ops.UNSUPPORTED)
    assert not (set(onnx_ops.RESTRICTIONS) & onnx_ops.UNSUPPORTED)
    assert not (set(onnx_ops.RESTRICTIONS) & onnx_ops.SUPPORTED)
    assert onnx_ops.tensorrt_support("Conv") == ("supported", "")
    assert onnx_ops.tensorrt_support("TopK")[0] == "restricted"
    assert onnx_ops.TENSORRT_TABLE_VERSION in onnx_ops.TABLE_SOURCE


def test_corrupt_and_missing_files(tmp_path, capsys):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\xff\xfe not an onnx file")
    rc = main(["check-onnx", str(bad)])
    last, err = _last_line(capsys)
    assert rc == 2 and "corrupt.onnx" in err and last.startswith("ops=0 unsupported=0 error=1")
    rc = main(["check-onnx", str(tmp_path / "missing.onnx")])
    last, err = _last_line(capsys)
    assert rc == 2 and "not found" in err
