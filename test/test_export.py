"""ONNX export with the shipped weights: contract names/shapes, TensorRT-friendly ops, parity with torch;
model_store errors; loading never unpickles."""

import json
import os
import pickle

import numpy as np
import onnx
import pytest
import torch
from model_helpers import weights_only_copy

from panoptic_ros.backends.onnx_ops import load_model, op_counts
from panoptic_ros.core import synthetic
from panoptic_ros.families.model_store import (
    ModelError,
    load_model_info,
    load_torch_model,
    resolve_onnx,
)
from panoptic_ros.families.panoptic_export import check_parity, export_onnx

#: ops TensorRT parses (subset we allow in the exported graph)
TRT_OPS = {
    "Conv",
    "Relu",
    "Clip",
    "Resize",
    "MaxPool",
    "TopK",
    "ArgMax",
    "ArgMin",
    "Gather",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Reshape",
    "Transpose",
    "Cast",
    "Where",
    "Less",
    "Greater",
    "Equal",
    "And",
    "ReduceMin",
    "ReduceSum",
    "Concat",
    "Unsqueeze",
    "Squeeze",
    "MatMul",
    "Floor",
    "Constant",
    "Slice",
    "Shape",
    "BatchNormalization",
    "Expand",
    "ConstantOfShape",
    "Flatten",
    "Identity",
    "Not",
    "Neg",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    info = load_model_info("default")
    net = load_torch_model(info, raw=True)
    is_thing = info.taxonomy.is_thing_lut()[:-1].tolist()
    h, w = info.input_size
    post = export_onnx(
        net,
        is_thing,
        d / "post.onnx",
        height=h,
        width=w,
        top_k=info.top_k,
        nms_kernel=info.nms_kernel,
    )
    raw = export_onnx(net, is_thing, d / "raw.onnx", height=h, width=w, raw=True)
    return info, net, is_thing, post, raw


def test_contract_names_and_shapes(exported):
    info, _, _, post, raw = exported
    h, w = info.input_size
    m = onnx.load(str(post))

    def shape(v):
        return [d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [i.name for i in m.graph.input] == ["image", "center_threshold"]
    assert [o.name for o in m.graph.output] == ["semantic", "instance", "center_score"]
    assert shape(m.graph.input[0]) == [1, 3, h, w] and shape(m.graph.input[1]) == [1]
    assert shape(m.graph.output[0]) == [1, h, w] and shape(m.graph.output[1]) == [1, h, w]
    assert shape(m.graph.output[2]) == [1, info.top_k]
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert m.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert m.opset_import[0].version >= 17
    r = onnx.load(str(raw))
    assert [o.name for o in r.graph.output] == [
        "semantic_logits",
        "center_heatmap",
        "center_offset",
    ]


def test_ops_are_tensorrt_friendly(exported):
    ops = {op for _, op in op_counts(load_model(exported[3]))}
    assert ops <= TRT_OPS, f"unexpected ops: {sorted(ops - TRT_OPS)}"


def test_parity_with_torch(exported):
    info, net, is_thing, post, raw = exported
    h, w = info.input_size
    imgs = [
        synthetic.generate_scene(s, h, w, info.taxonomy).image
        for s in synthetic.validation_seeds(3, start=4242)
    ]
    rep = check_parity(
        net,
        is_thing,
        imgs,
        post_onnx=post,
        raw_onnx=raw,
        top_k=info.top_k,
        nms_kernel=info.nms_kernel,
    )
    assert rep.panoptic_identical >= 0.999, rep
    assert rep.max_abs_diff_logits < 1e-2, rep


def test_resolve_onnx_caches(tmp_path):
    info = load_model_info(weights_only_copy(tmp_path / "m"))
    # a partial export left by a process killed mid-write an hour ago goes; a fresh one (another
    # process exporting right now) and foreign files stay
    abandoned, busy, foreign = (
        tmp_path / "default-x.onnx.abc.tmp",
        tmp_path / "default-y.onnx.def.tmp",
        tmp_path / "notes",
    )
    for p in (abandoned, busy, foreign):
        p.write_bytes(b"partial")
    for p in (abandoned, foreign):
        os.utime(p, (p.stat().st_atime - 7200, p.stat().st_mtime - 7200))
    p1 = resolve_onnx(info, batch=1, cache_dir=tmp_path)
    assert not abandoned.exists() and busy.exists() and foreign.exists()
    busy.unlink()
    mtime = p1.stat().st_mtime_ns
    p2 = resolve_onnx(info, batch=1, cache_dir=tmp_path)
    assert p1 == p2 and p2.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp"))
    # a user ONNX resolves to itself and keeps its static shapes
    user = load_model_info(p1)
    assert user.onnx_path == p1 and user.input_size == info.input_size and user.top_k == info.top_k
    assert resolve_onnx(user) == p1


def _copy_model(tmp_path):
    src = load_model_info("default").directory
    d = tmp_path / "m"
    d.mkdir()
    for f in ("weights.safetensors", "metadata.json"):
        (d / f).write_bytes((src / f).read_bytes())
    return d


def test_truncated_weights_named(tmp_path):
    d = _copy_model(tmp_path)
    w = d / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"weights\.safetensors.*truncated"):
        load_torch_model(load_model_info(d))


def test_garbage_weights_named(tmp_path):
    d = _copy_model(tmp_path)
    (d / "weights.safetensors").write_bytes(b"\x80\x04garbage" * 50)
    with pytest.raises(ModelError, match=r"weights\.safetensors.*not a safetensors"):
        load_model_info(d)


def test_missing_and_bad_metadata(tmp_path):
    d = _copy_model(tmp_path)
    (d / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="metadata.json"):
        load_model_info(d)
    (d / "metadata.json").unlink()
    with pytest.raises(ModelError, match="missing metadata.json"):
        load_model_info(d)
    with pytest.raises(ModelError, match="not found"):
        load_model_info(tmp_path / "nope")


def test_wrong_arch_named(tmp_path):
    d = _copy_model(tmp_path)
    meta = json.loads((d / "metadata.json").read_text())
    meta["arch"]["sem_channels"] = 32
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not match the architecture"):
        load_torch_model(load_model_info(d))


def test_user_onnx_with_wrong_inputs(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [x], [y])
    p = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g), str(p))
    with pytest.raises(ModelError, match=r"bad\.onnx.*'image' missing"):
        load_model_info(p)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \xff\xff")
    with pytest.raises(ModelError, match=r"junk\.onnx"):
        load_model_info(tmp_path / "junk.onnx")


def test_loading_never_unpickles(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pickle used while loading weights")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)
    net = load_torch_model(load_model_info("default"), raw=True)
    assert not net.training
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 32, 32))
    assert len(out) == 3 and np.isfinite(out[0].numpy()).all()
