"""Backends on real onnxruntime and real torch with the real exported model (no mocks).

The model is the project's default model (models/default) when present; until it lands, a
freshly initialised network of the same architecture saved with model_store.save_model (same
export path, same ONNX contract), so every assertion still runs on a real export.
CUDA / TensorRT paths are skipped here with the reason; docs/backends.md lists them.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from panoptic_ros.backends import AUTO_ORDER, BackendError, availability, create_backend

torch = pytest.importorskip("torch")

from model_helpers import default_or_untrained_model_info  # noqa: E402

CUDA = torch.cuda.is_available()
NO_CUDA = "needs an NVIDIA GPU: torch.cuda.is_available() is False on this machine (CPU-only torch)"
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def model_info(tmp_path_factory):
    """(ModelInfo, onnx cache dir): the default model, else a same-architecture untrained one."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("onnx_cache")
    mp.setenv("PANOPTIC_ROS_CACHE", str(cache))
    yield default_or_untrained_model_info(tmp_path_factory)
    mp.undo()


def _inputs(info, seeds, thr=0.1):
    from panoptic_ros.core.synthetic import generate_scene

    h, w = info.input_size
    imgs = [generate_scene(s, height=h, width=w, taxonomy=info.taxonomy).image for s in seeds]
    return {
        "image": np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32),
        "center_threshold": np.array([thr], np.float32),
    }


# -- parity -------------------------------------------------------------------------------
def test_parity_is_not_vacuous(model_info):
    """The compared maps contain things: the default model finds instances on generated scenes."""
    if model_info.directory.name != "default":
        pytest.skip("untrained stand-in model: no instances expected")
    pq = float(model_info.metadata.get("eval", {}).get("pq", 0.0))
    if pq < 0.05:
        pytest.skip(f"default weights are a placeholder (eval pq={pq}): no instances expected yet")
    with create_backend("onnxruntime", model_info, threads=1) as ort:
        out = ort.infer(_inputs(model_info, [11]))
    assert len(np.unique(out["semantic"])) >= 3
    assert out["instance"].max() >= 1


def test_onnxruntime_and_torch_agree_on_raw_outputs(model_info):
    x = _inputs(model_info, [11])
    with (
        create_backend("onnxruntime", model_info, threads=1) as ort,
        create_backend("torch", model_info, threads=1) as tb,
    ):
        assert ort.input_specs == tb.input_specs
        assert ort.output_specs == tb.output_specs
        a, b = ort.infer(x), tb.infer(x)
    h, w = model_info.input_size
    assert a["semantic"].shape == (1, h, w) and a["semantic"].dtype == np.int32
    assert a["center_score"].shape == (1, model_info.top_k)
    for k in ("semantic", "instance"):
        assert (a[k] == b[k]).mean() >= 0.999, k
    # centre scores: same top score; every kept score of one backend is (to 1e-4) one of the other's.
    # (Exact lists can differ where a heat-map plateau's pixels tie within float rounding.)
    sa, sb = a["center_score"][0], b["center_score"][0]
    np.testing.assert_allclose(sa[0], sb[0], atol=1e-4)
    cut = max(sa.min(), sb.min()) + 1e-3  # below this the fixed-K list may be cut differently
    for p, q in ((sa, sb), (sb, sa)):
        p = p[p > cut]
        if p.size:
            assert np.abs(p[:, None] - q[None, :]).min(1).max() < 1e-4


def test_segmenter_panoptic_maps_agree(model_info):
    from panoptic_ros.core.synthetic import generate_scene
    from panoptic_ros.families.factory import build_segmenter

    seg_o = build_segmenter(model_info, backend="onnxruntime", threads=1)
    seg_t = build_segmenter(model_info, backend="torch", threads=1)
    try:
        for seed in (101, 202, 303):
            img = generate_scene(seed, height=240, width=320, taxonomy=model_info.taxonomy).image
            po, pt = seg_o.segment(img).panoptic, seg_t.segment(img).panoptic
            assert po.shape == pt.shape == img.shape[:2]
            assert (po == pt).mean() >= 0.999, seed
    finally:
        seg_o.close()
        seg_t.close()


def test_batch2_matches_batch1(model_info):
    x = _inputs(model_info, [5, 6])
    with create_backend("onnxruntime", model_info, batch=2, threads=1) as b2:
        assert b2.max_batch == 2
        out2 = b2.infer(x)
    with create_backend("onnxruntime", model_info, batch=1, threads=1) as b1:
        for i in range(2):
            out1 = b1.infer(
                {"image": x["image"][i : i + 1], "center_threshold": x["center_threshold"]}
            )
            assert (out1["semantic"][0] == out2["semantic"][i]).mean() >= 0.999
            assert (out1["instance"][0] == out2["instance"][i]).mean() >= 0.999


# -- options ------------------------------------------------------------------------------
def test_onnxruntime_threads_honoured(model_info):
    be = create_backend("onnxruntime", model_info, threads=1).open()
    try:
        assert be._session.get_session_options().intra_op_num_threads == 1
        assert be.device == "cpu"
    finally:
        be.close()


def test_onnxruntime_threads_do_not_spin_unless_asked(model_info):
    """Spinning intra-op threads steal the cores post-processing and publishing need (see the backend)."""
    from panoptic_ros.backends.onnxruntime import OnnxRuntimeBackend

    key = "session.intra_op.allow_spinning"
    be = create_backend("onnxruntime", model_info).open()
    spin = OnnxRuntimeBackend(be.model_path, allow_spinning=True).open()
    try:
        assert be._session.get_session_options().get_session_config_entry(key) == "0"
        assert spin._session.get_session_options().get_session_config_entry(key) == "1"
    finally:
        be.close()
        spin.close()


def test_torch_threads_honoured(model_info):
    before = torch.get_num_threads()
    try:
        with create_backend("torch", model_info, threads=1) as be:
            assert torch.get_num_threads() == 1
            assert be.device == "cpu"
    finally:
        torch.set_num_threads(before)


def test_auto_picks_best_available_and_logs_why(model_info):
    logs: list[str] = []
    be = create_backend("auto", model_info, logger=logs.append)
    avail = availability()
    expected = next(n for n in AUTO_ORDER if avail[n][0])
    assert be.name == ("torch" if expected == "torch-cuda" else expected)
    assert len(logs) == 1 and logs[0].startswith(f"backend auto -> {be.name}")
    if be.name == "onnxruntime":  # this machine: says why tensorrt and torch-cuda were skipped
        assert "skipped: tensorrt:" in logs[0] and "torch-cuda:" in logs[0]


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present: auto would pick a GPU backend")
def test_auto_on_cpu_machine_says_precision_fallback(model_info):
    logs: list[str] = []
    be = create_backend("auto", model_info, precision="FP16", logger=logs.append)
    assert (
        be.name == "onnxruntime"
        and "precision fp16 not supported by onnxruntime: using fp32" in logs[0]
    )
    with pytest.raises(BackendError, match="unknown precision 'fp8'"):
        create_backend("auto", model_info, precision="fp8")


def test_auto_uses_logging_without_logger(model_info, caplog):
    with caplog.at_level(logging.INFO, logger="panoptic_ros.backends"):
        create_backend("auto", model_info, device="cpu")
    assert any("backend auto -> onnxruntime" in r.getMessage() for r in caplog.records)


# -- error paths --------------------------------------------------------------------------
def test_unknown_backend(model_info):
    with pytest.raises(BackendError, match=r"unknown backend 'openvino'.*onnxruntime"):
        create_backend("openvino", model_info)


@pytest.mark.skipif(
    HAS_TRT and CUDA,
    reason="tensorrt and a GPU are present: the missing-tensorrt error cannot happen",
)
def test_tensorrt_missing_names_it_and_suggests_onnxruntime(model_info):
    with pytest.raises(BackendError) as exc:
        create_backend("tensorrt", model_info)
    msg = str(exc.value)
    assert "tensorrt" in msg and "NVIDIA GPU" in msg and "onnxruntime" in msg and "available" in msg


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present")
def test_torch_cuda_without_gpu_is_clear(model_info):
    with pytest.raises(
        BackendError, match=r"device 'cuda' requested.*torch.cuda.is_available\(\) is False.*'cpu'"
    ):
        create_backend("torch", model_info, device="cuda")


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present")
def test_onnxruntime_cuda_without_provider_is_clear(model_info):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA EP")
    be = create_backend("onnxruntime", model_info, device="cuda")
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        be.open()


def test_corrupt_onnx_names_the_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    be = create_backend("onnxruntime", bad)
    with pytest.raises(BackendError, match=r"broken\.onnx"):
        be.open()
    missing = tmp_path / "nope.onnx"
    with pytest.raises(BackendError, match=r"nope\.onnx"):
        create_backend("onnxruntime", missing).open()


def test_truncated_exported_onnx(model_info, tmp_path):
    from panoptic_ros.families.model_store import resolve_onnx

    src = resolve_onnx(model_info)
    cut = tmp_path / "truncated.onnx"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(BackendError, match=r"truncated\.onnx"):
        create_backend("onnxruntime", cut).open()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_bad_inputs_raise_backend_error(model_info, backend):
    x = _inputs(model_info, [1])
    with create_backend(backend, model_info, threads=1) as be:
        with pytest.raises(BackendError, match="has shape"):
            be.infer({**x, "image": x["image"][:, :, :-1]})
        with pytest.raises(BackendError, match="has shape"):
            be.infer({**x, "image": x["image"][0]})
        with pytest.raises(BackendError, match="has shape"):
            be.infer(
                {**x, "image": np.concatenate([x["image"]] * 2)}
            )  # batch 2 into a batch-1 model
        with pytest.raises(BackendError, match="missing input 'image'"):
            be.infer({"img": x["image"], "center_threshold": x["center_threshold"]})
        with pytest.raises(BackendError, match="unexpected input"):
            be.infer({**x, "extra": x["center_threshold"]})
    with pytest.raises(BackendError, match="before open"):
        be.infer(x)


def test_option_errors(model_info, tmp_path):
    with pytest.raises(BackendError, match="runs fp32 or int8"):
        create_backend("onnxruntime", model_info, precision="fp16")
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        create_backend("torch", model_info, precision="fp16")
    with pytest.raises(BackendError, match="int8 is only supported by the tensorrt"):
        create_backend("torch", model_info, precision="int8")
    with pytest.raises(BackendError, match="cuda_graph needs a CUDA device"):
        create_backend("torch", model_info, cuda_graph=True)
    with pytest.raises(BackendError, match="unknown option"):
        create_backend("onnxruntime", model_info, fancy=True)
    with pytest.raises(BackendError, match="batch must be >= 1"):
        create_backend("onnxruntime", model_info, batch=0)
    with pytest.raises(BackendError, match="unknown device"):
        create_backend("torch", model_info, device="tpu")
    onnx_file = tmp_path / "user.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(BackendError, match="torch backend needs a model directory"):
        create_backend("torch", onnx_file)


# -- GPU-only paths (skipped here) ----------------------------------------------------------
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize(
    "precision,cuda_graph,min_equal",
    [("fp32", False, 0.999), ("fp32", True, 0.999), ("fp16", False, 0.99), ("fp16", True, 0.99)],
)
def test_torch_cuda_matches_cpu(
    model_info, precision, cuda_graph, min_equal
):  # pragma: no cover - GPU only
    x = _inputs(model_info, [7])
    with create_backend("torch", model_info, threads=1) as cpu:
        ref = cpu.infer(x)
    with create_backend(
        "torch", model_info, device="cuda", precision=precision, cuda_graph=cuda_graph
    ) as gpu:
        out = gpu.infer(x)
        out2 = gpu.infer(x)  # buffers reused
        assert "cuda" in gpu.device
    for k in ("semantic", "instance"):
        assert (out[k] == ref[k]).mean() >= min_equal, k
        assert np.array_equal(out[k], out2[k])


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
def test_torch_cuda_backends_own_streams(model_info):  # pragma: no cover - GPU only
    with (
        create_backend("torch", model_info, device="cuda") as a,
        create_backend("torch", model_info, device="cuda") as b,
    ):
        assert a._stream is not None and a._stream != b._stream
        assert a._host_in["image"].is_pinned()


@pytest.mark.skipif(
    not (CUDA and HAS_TRT),
    reason="TensorRT backend needs the 'tensorrt' package and an NVIDIA GPU (absent here)",
)
def test_tensorrt_matches_onnxruntime(model_info, tmp_path):  # pragma: no cover - GPU only
    x = _inputs(model_info, [9])
    with create_backend("onnxruntime", model_info, threads=1) as ort:
        ref = ort.infer(x)
    with (
        create_backend("tensorrt", model_info, precision="fp32", cache_dir=tmp_path) as a,
        create_backend("tensorrt", model_info, precision="fp32", cache_dir=tmp_path) as b,
    ):
        assert a._engine is b._engine and a._context is not b._context
        out = a.infer(x)
    for k in ("semantic", "instance"):
        assert (out[k] == ref[k]).mean() >= 0.999
