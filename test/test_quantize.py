"""INT8 (QDQ) model: real ONNX Runtime sessions on the shipped quantized graph, TensorRT's
explicit-quantization rules checked without a GPU, precision selection and its errors.

PQ figures on 200 scenes and the speed ratio live in docs/performance.md ("INT8"): these tests
check the mechanics and a sane PQ bound on a few scenes, never time.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter

import numpy as np
import onnx
import onnxruntime
import pytest

from panoptic_ros.backends import BackendError, create_backend, has_qdq
from panoptic_ros.backends import engine_cache as ec
from panoptic_ros.core import synthetic
from panoptic_ros.evaluation.coco_panoptic import PanopticAnnotation, score_image
from panoptic_ros.evaluation.metrics import PanopticQuality
from panoptic_ros.families import quantize as q
from panoptic_ros.families.factory import build_segmenter, segmenter_from_settings
from panoptic_ros.families.model_store import load_model_info, resolve_onnx


@pytest.fixture(scope="module")
def info():
    return load_model_info("default")


@pytest.fixture(scope="module")
def shipped(info):
    path = info.directory / q.int8_onnx_name(info, 1)
    assert path.is_file(), (
        f"{path.name} is not shipped beside the weights: the recipe in metadata.json 'int8' or the "
        "fp32 graph changed; regenerate it with families.quantize.quantize_model (docs/performance.md)"
    )
    return path


def _pq(seg, seeds) -> float:
    metric = PanopticQuality(seg.taxonomy)
    for s in seeds:
        scene = synthetic.generate_scene(s, 240, 320, seg.taxonomy)
        score_image(metric, seg.segment(scene.image).panoptic, PanopticAnnotation(scene.panoptic))
    return metric.compute().pq


def test_int8_runs_through_the_factory_with_sane_pq(info, shipped):
    """precision=int8 opens the shipped QDQ graph in a real ORT session; PQ on 12 validation
    scenes stays near fp32 (the 200-scene figure is in docs/performance.md)."""
    seeds = synthetic.validation_seeds(12)
    with build_segmenter("default", "onnxruntime", precision="int8") as seg8:
        assert seg8.backend.model_path == shipped
        pq8 = _pq(seg8, seeds)
    with build_segmenter("default", "onnxruntime") as seg32:
        assert not has_qdq(seg32.backend.model_path)
        pq32 = _pq(seg32, seeds)
    assert pq32 > 0.6 and abs(pq32 - pq8) < 0.05, (pq32, pq8)
    # the node's path: its parameters (precision: int8) through segmenter_from_settings
    cfg = {"model": "default", "backend": "onnxruntime", "precision": "int8", "device": ""}
    seg = segmenter_from_settings(cfg)
    try:
        assert seg.backend.model_path == shipped
    finally:
        seg.close()


def test_shipped_graph_meets_tensorrt_rules(shipped):
    m = onnx.load(str(shipped))
    assert q.check_qdq_rules(m) == []
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    # post-processing (ArgMax, NMS, TopK, grouping) is never quantized
    producers = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.name.startswith("/post/"):
            assert n.op_type not in ("QuantizeLinear", "DequantizeLinear"), n.name
    # every quantized Conv weight is int8, per channel on axis 0
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if producers.get(c.input[1], c).op_type == "DequantizeLinear"]
    fp32 = {c.name for c in convs} - {c.name for c in quantized}
    assert fp32 and all("_head/" in name for name in fp32), fp32  # the recipe keeps heads fp32
    assert len(quantized) >= 40


def test_rules_catch_what_tensorrt_refuses(info, tmp_path):
    """uint8 asymmetric activations (ORT's CPU alternative) break the zero-point rule; a
    per-tensor Conv weight breaks the per-channel rule."""
    recipe = q.QuantRecipe(scenes=2, activations="uint8-asymmetric", op_types=("Conv",))
    path = q.quantize_model(info, tmp_path / "u8.onnx", recipe=recipe)
    problems = q.check_qdq_rules(path)
    assert problems and any("zero point is UINT8" in p for p in problems)
    assert any("not 0" in p for p in problems)
    m = onnx.load(str(path))
    producers = {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    dq = producers[conv.input[1]]
    scale = next(i for i in m.graph.initializer if i.name == dq.input[1])
    scale.ClearField("dims")
    del scale.float_data[1:]
    if scale.raw_data:
        scale.raw_data = scale.raw_data[:4]
    assert any("per channel on axis 0" in p for p in q.check_qdq_rules(m))


def test_shipped_recipe_regenerates_the_same_structure(info, shipped, tmp_path, capsys):
    """``panoptic-ros export --int8`` with the recipe recorded in metadata.json (and in the graph)
    rebuilds a graph of the same structure with the same scales: the shipped file is reproducible."""
    from panoptic_ros.cli import main

    recipe = q.model_recipe(info)
    assert q.graph_recipe(shipped) == recipe.to_dict()
    ev = info.metadata["int8"]["eval"]
    assert ev["scenes"] == 200 and ev["pq_fp32"] - ev["pq"] <= 0.01
    again = tmp_path / "again.onnx"
    assert main(["export", "--int8", "--out", str(again)]) == 0
    assert "tensorrt_rules=ok" in capsys.readouterr().out.strip().splitlines()[-1]
    made_with = ev["quantized_with"].split(",")[0].split()[-1]
    if made_with.split(".")[:2] == onnxruntime.__version__.split(".")[:2]:
        assert q.structure(again) == q.structure(shipped)
    else:  # another ONNX Runtime may name nodes differently: same operators, same counts
        assert Counter(op for op, _ in q.structure(again)) == Counter(
            op for op, _ in q.structure(shipped)
        ), f"shipped graph made with onnxruntime {made_with}, this is {onnxruntime.__version__}"
    a, b = onnx.load(str(again)), onnx.load(str(shipped))
    sa = {i.name: onnx.numpy_helper.to_array(i) for i in a.graph.initializer}
    sb = {i.name: onnx.numpy_helper.to_array(i) for i in b.graph.initializer}
    scales = [k for k in sb if k.endswith("_scale") and k in sa]
    assert len(scales) > 40
    for k in scales:  # same calibration scenes, same MinMax: the same ranges
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-4, err_msg=k)


def test_unshipped_int8_is_generated_once_into_the_cache(info, tmp_path):
    """A model directory without a shipped int8 graph gets one generated into the cache (atomic,
    reused next time), named by the fp32 graph's key and the recipe."""
    d = tmp_path / "model"
    d.mkdir()
    for f in ("weights.safetensors", "metadata.json"):
        shutil.copy(info.directory / f, d / f)
    fp32 = resolve_onnx(info, 1)
    shutil.copy(fp32, d / fp32.name)  # the fp32 export ships, the int8 one does not
    meta = json.loads((d / "metadata.json").read_text())
    meta["int8"] = dict(meta["int8"], scenes=2)
    (d / "metadata.json").write_text(json.dumps(meta))
    small = load_model_info(d)
    cache = tmp_path / "cache"
    p1 = q.resolve_int8_onnx(small, 1, cache_dir=cache)
    assert p1.parent == cache and p1.name.endswith(q.int8_onnx_name(small, 1))
    assert p1.name != q.int8_onnx_name(info, 1)  # another recipe, another key
    mtime = p1.stat().st_mtime_ns
    assert q.resolve_int8_onnx(small, 1, cache_dir=cache) == p1 and p1.stat().st_mtime_ns == mtime
    assert not list(cache.glob("*.tmp"))


def test_precision_errors_name_the_allowed_values(info, tmp_path):
    with pytest.raises(
        BackendError, match="unknown precision 'int4'; choose one of fp32, fp16, int8"
    ):
        create_backend("onnxruntime", info, precision="int4")
    with pytest.raises(BackendError, match="unknown precision 'bogus'"):
        build_segmenter("default", "onnxruntime", precision="bogus")
    with pytest.raises(BackendError, match="runs fp32 or int8"):
        create_backend("onnxruntime", info, precision="fp16")
    with pytest.raises(ValueError, match="unknown calibration method 'kl'; choose one of"):
        q.QuantRecipe(method="kl")
    # a plain fp32 .onnx cannot be run as int8 by onnxruntime: it says what it needs
    fp32 = resolve_onnx(info, 1)
    with pytest.raises(BackendError, match="needs a quantized \\(QDQ\\) graph"):
        create_backend("onnxruntime", fp32, precision="int8")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="auto would pick tensorrt here"
)
def test_auto_int8_on_cpu(info, shipped):
    """auto without a GPU: onnxruntime runs the model's QDQ graph; a plain fp32 .onnx falls back
    to fp32 and says so."""
    logs: list[str] = []
    be = create_backend("auto", info, precision="int8", device="cpu", logger=logs.append)
    assert be.name == "onnxruntime" and be.model_path == shipped
    be = create_backend("auto", resolve_onnx(info, 1), precision="int8", logger=logs.append)
    assert be.name == "onnxruntime" and not has_qdq(be.model_path)
    assert "int8: this .onnx has no Q/DQ nodes: using fp32" in logs[-1]


def test_int8_qdq_onnx_file_runs_as_given(info, shipped, tmp_path):
    """A user's already quantized .onnx runs with precision int8 (and fp32: it is just a graph)."""
    be = create_backend("onnxruntime", shipped, precision="int8")
    with be:
        x = {
            "image": np.zeros((1, 3, 240, 320), np.float32),
            "center_threshold": np.array([0.1], np.float32),
        }
        out = be.infer(x)
    assert out["semantic"].shape == (1, 240, 320)


def test_bench_and_eval_select_precision(capsys):
    """``bench --precisions fp32,int8`` reports both and their ratio from one interleaved run;
    ``eval --precision int8`` scores the int8 graph."""
    from panoptic_ros.cli import main

    argv = ["bench", "--precisions", "fp32,int8", "--frames", "4", "--turn", "2", "--warmup", "1"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    kv = dict(part.split("=") for part in line.split())
    assert set(kv) == {
        "infer_ms_fp32",
        "segment_ms_fp32",
        "infer_ms_int8",
        "segment_ms_int8",
        "infer_speedup_int8",
    }
    assert float(kv["infer_speedup_int8"]) > 0
    assert main(["eval", "--synthetic", "3", "--precision", "int8", "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("PQ=")
    assert main(["eval", "--synthetic", "1", "--precision", "int4", "--quiet"]) == 1
    assert "choose one of fp32, fp16, int8" in capsys.readouterr().err


# -- TensorRT: everything but the GPU ---------------------------------------------------------
def test_tensorrt_builds_qdq_graph_by_explicit_quantization():
    """TensorRT 10: strongly typed network, no precision flags, no calibrator (TensorRT's
    "Explicit Quantization": precision-control flags should not be specified); 8.x: INT8 flag;
    a plain fp32 graph keeps the implicit calibrator."""
    s10 = ec.builder_settings("int8", explicit_quantization=True, tensorrt_major=10)
    assert s10.strongly_typed and s10.flags == () and not s10.calibrate
    assert s10.explicit_quantization and s10.calibration_batches == 0
    s8 = ec.builder_settings("int8", explicit_quantization=True, tensorrt_major=8)
    assert "INT8" in s8.flags and not s8.strongly_typed and not s8.calibrate
    implicit = ec.builder_settings("int8")
    assert implicit.calibrate and "INT8" in implicit.flags and not implicit.strongly_typed
    # explicit quantization only applies to int8
    assert not ec.builder_settings("fp16", explicit_quantization=True).strongly_typed


def test_tensorrt_backend_takes_the_qdq_graph(info, shipped):
    """What create_backend hands TensorRT for int8 (no GPU needed to construct it): the QDQ
    graph and the explicit-quantization settings; the engine slot and key include precision."""
    from panoptic_ros.backends.tensorrt import TensorRTBackend

    path = info.onnx_file(1, precision="int8")
    assert path == shipped and has_qdq(path)
    be = TensorRTBackend(path, precision="int8", explicit_quantization=has_qdq(path))
    assert be.settings.explicit_quantization and not be.settings.calibrate
    shape = (1, 3, 240, 320)
    assert ec.slot_name("default", "int8", shape) != ec.slot_name("default", "fp32", shape)
    meta = dict(
        onnx_sha256=ec.sha256_file(path),
        tensorrt_version="10.3.0",
        gpu_name="gpu",
        compute_capability="9.0",
        input_shape=shape,
    )
    assert (
        ec.EngineMeta(precision="int8", **meta).key != ec.EngineMeta(precision="fp16", **meta).key
    )


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None,
    reason="GPU part: building and running a TensorRT engine from the QDQ graph needs the "
    "'tensorrt' package and an NVIDIA GPU (not installable on this CI machine)",
)
def test_tensorrt_int8_engine_from_qdq(info, tmp_path):  # pragma: no cover - GPU only
    import torch

    if not torch.cuda.is_available():
        pytest.skip("GPU part: no CUDA GPU visible to torch")
    seeds = synthetic.validation_seeds(12)
    with build_segmenter("default", "tensorrt", precision="int8", cache_dir=tmp_path) as seg:
        assert seg.backend.settings.explicit_quantization
        pq8 = _pq(seg, seeds)
    with build_segmenter("default", "onnxruntime") as seg32:
        pq32 = _pq(seg32, seeds)
    assert abs(pq32 - pq8) < 0.05


def test_recipe_that_selects_no_node_is_refused(info, tmp_path):
    """A recipe whose exclude / op_types leave no network node: ONNX Runtime takes an empty
    nodes_to_quantize as "quantize every node" (post-processing included), so this once wrote a
    fully quantized graph; now a ModelError naming the recipe, and nothing is written."""
    for recipe in (
        q.QuantRecipe(scenes=1, exclude=("/net/",)),
        q.QuantRecipe(scenes=1, op_types=()),
    ):
        out = tmp_path / "m.onnx"
        with pytest.raises(q.ModelError, match="selects no node under '/net/'"):
            q.quantize_model(info, out, recipe=recipe)
        assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_damaged_int8_files_are_named_or_remade(info, tmp_path):
    """A shipped int8 file that is garbage or an fp32 graph under the int8 name is a ModelError
    naming it (the fp32 one once ran silently as 'int8'); a damaged one in the cache is remade
    (it once failed every start until deleted by hand)."""
    d = tmp_path / "model"
    d.mkdir()
    for f in ("weights.safetensors", "metadata.json"):
        shutil.copy(info.directory / f, d / f)
    fp32 = resolve_onnx(info, 1)
    shutil.copy(fp32, d / fp32.name)
    meta = json.loads((d / "metadata.json").read_text())
    meta["int8"] = dict(meta["int8"], scenes=1)
    (d / "metadata.json").write_text(json.dumps(meta))
    small = load_model_info(d)
    name = q.int8_onnx_name(small, 1)
    cache = tmp_path / "cache"
    for content, why in ((b"garbage" * 50, "unreadable"), (fp32.read_bytes(), "no QuantizeLinear")):
        (d / name).write_bytes(content)
        with pytest.raises(q.ModelError, match=f"shipped int8 graph .*{why}"):
            q.resolve_int8_onnx(small, 1, cache_dir=cache)
    (d / name).unlink()
    made = q.resolve_int8_onnx(small, 1, cache_dir=cache)
    assert q.is_qdq_graph(made)
    for content in (b"garbage" * 50, fp32.read_bytes()):
        made.write_bytes(content)
        assert q.resolve_int8_onnx(small, 1, cache_dir=cache) == made and q.is_qdq_graph(made)
