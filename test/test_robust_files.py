"""Corrupt or wrong files at start-up (issue #8): each gives ONE clear error naming the file and
the fault, and nothing half-written is left behind.

Real components only: model_store, Segmenter, the onnxruntime backend, engine_cache, params,
taxonomy and the installed ``panoptic_node`` executable. Faults are made by writing bad bytes;
the atomic-write tests inject an exception / SIGKILL in the middle of the real writer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from model_helpers import weights_only_copy

from panoptic_ros.backends import BackendError, create_backend
from panoptic_ros.backends import engine_cache as ec
from panoptic_ros.core.taxonomy import Taxonomy, TaxonomyError
from panoptic_ros.families.factory import build_segmenter
from panoptic_ros.families.model_store import (
    METADATA_FILE,
    WEIGHTS_FILE,
    ModelError,
    default_model_dir,
    load_model_info,
    load_torch_model,
    resolve_onnx,
)
from panoptic_ros.ros import params as P

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "panoptic_node"
#: a "clear error" is one line of reasonable length (no tensor-by-tensor wall, no traceback)
MAX_ERROR_CHARS = 700


def _default_dir() -> Path:
    try:
        return default_model_dir()
    except ModelError:
        pytest.skip("no default model in models/default yet")


def assert_one_clear_error(exc: BaseException, *must_contain: str) -> str:
    text = str(exc)
    assert "\n" not in text.strip(), f"error spans several lines:\n{text}"
    assert len(text) <= MAX_ERROR_CHARS, f"error is a {len(text)}-char wall: {text[:300]}..."
    for s in must_contain:
        assert s.lower() in text.lower(), f"{s!r} not named in error: {text}"
    return text


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(d))
    return d


def leftovers(d: Path) -> list[str]:
    """Files in a cache dir that a reader could mistake for an entry, or stray temp files."""
    if not d.exists():
        return []
    return sorted(p.name for p in d.rglob("*") if p.is_file())


def model_copy(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    shutil.copytree(_default_dir(), d)
    return d


# --------------------------------------------------------------------------------------------
# weights.safetensors / metadata.json
# --------------------------------------------------------------------------------------------
def _weights_faults() -> dict[str, tuple]:
    """name -> (mutate(dir), words the error must contain)."""

    def trunc(frac):
        def f(d):
            b = (d / WEIGHTS_FILE).read_bytes()
            (d / WEIGHTS_FILE).write_bytes(b[: int(len(b) * frac)])

        return f

    def write(name, data):
        return lambda d: (d / name).write_bytes(data)

    rng = np.random.default_rng(8)
    return {
        "weights_missing": (lambda d: (d / WEIGHTS_FILE).unlink(), ["missing", WEIGHTS_FILE]),
        "weights_empty": (write(WEIGHTS_FILE, b""), [WEIGHTS_FILE, "truncated"]),
        "weights_truncated_in_header": (trunc(0.00005), [WEIGHTS_FILE]),
        "weights_truncated_half": (trunc(0.5), [WEIGHTS_FILE, "truncated"]),
        "weights_truncated_last_byte": (trunc(0.99999), [WEIGHTS_FILE, "truncated"]),
        "weights_garbage": (
            write(WEIGHTS_FILE, rng.bytes(4096)),
            [WEIGHTS_FILE, "not a safetensors"],
        ),
        "weights_header_not_json": (
            write(WEIGHTS_FILE, (12).to_bytes(8, "little") + b"{not json!!}" + b"\0" * 64),
            [WEIGHTS_FILE, "not JSON"],
        ),
        "weights_header_bad_entry": (
            write(WEIGHTS_FILE, _st_bytes({"w": {"dtype": "F32", "shape": [1]}})),
            [WEIGHTS_FILE, "corrupt"],
        ),
        "weights_wrong_tensors": (
            write(
                WEIGHTS_FILE,
                _st_bytes({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 4),
            ),
            [WEIGHTS_FILE, "do not match"],
        ),
        "metadata_missing": (lambda d: (d / METADATA_FILE).unlink(), ["missing", METADATA_FILE]),
        "metadata_empty": (write(METADATA_FILE, b""), [METADATA_FILE, "not valid JSON"]),
        "metadata_truncated": (
            lambda d: (d / METADATA_FILE).write_bytes((d / METADATA_FILE).read_bytes()[:40]),
            [METADATA_FILE, "not valid JSON"],
        ),
        "metadata_garbage": (write(METADATA_FILE, b"\xff\xfe\x00garbage"), [METADATA_FILE]),
        "metadata_not_object": (write(METADATA_FILE, b"[1, 2, 3]"), [METADATA_FILE, "JSON object"]),
        "metadata_no_taxonomy": (
            _edit_meta(lambda m: m.pop("taxonomy")),
            [METADATA_FILE, "taxonomy"],
        ),
        "metadata_class_ids_clash": (
            _edit_meta(lambda m: m["taxonomy"]["classes"][1].update(id=0)),
            [METADATA_FILE, "clash"],
        ),
        "metadata_bad_input_size": (
            _edit_meta(lambda m: m.update(input_size="big")),
            [METADATA_FILE, "input_size"],
        ),
        "metadata_arch_mismatch": (
            _edit_meta(lambda m: m.update(arch=dict(m.get("arch") or {}, sem_channels=8))),
            [WEIGHTS_FILE, "do not match", METADATA_FILE],
        ),
    }


def _st_bytes(header: dict, data_len: int = 0) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + b"\0" * data_len


def _edit_meta(fn):
    def f(d):
        m = json.loads((d / METADATA_FILE).read_text())
        fn(m)
        (d / METADATA_FILE).write_text(json.dumps(m))

    return f


FAULTS = _weights_faults()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_corrupt_model_dir_one_clear_error(fault, tmp_path, cache):
    """build_segmenter (the node's path) raises once, naming the file and the fault; the
    export cache holds no ONNX (or temp file) afterwards."""
    mutate, words = FAULTS[fault]
    d = model_copy(tmp_path, fault)
    mutate(d)
    with pytest.raises((ModelError, BackendError)) as ei:
        build_segmenter(d, "onnxruntime")
    assert_one_clear_error(ei.value, str(d), *words)
    assert not [n for n in leftovers(cache) if n.endswith((".onnx", ".tmp"))], leftovers(cache)


@pytest.mark.parametrize(
    "fault",
    [
        "weights_truncated_half",
        "weights_garbage",
        "metadata_arch_mismatch",
        "weights_wrong_tensors",
    ],
)
def test_corrupt_weights_load_torch_model(fault, tmp_path):
    """load_torch_model (torch backend path) on the same faults: ModelError naming the weights file."""
    mutate, words = FAULTS[fault]
    d = model_copy(tmp_path, fault)
    mutate(d)
    with pytest.raises(ModelError) as ei:
        load_torch_model(load_model_info(d), raw=True)
    assert_one_clear_error(ei.value, WEIGHTS_FILE)


def test_model_path_errors(tmp_path):
    with pytest.raises(ModelError) as ei:
        load_model_info(tmp_path / "nope")
    assert_one_clear_error(ei.value, "not found", str(tmp_path / "nope"))
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ModelError) as ei:
        load_model_info(tmp_path / "model.txt")
    assert_one_clear_error(ei.value, "model.txt", "not a model directory")
    with pytest.raises(ModelError) as ei:
        load_model_info(tmp_path)  # empty directory
    assert_one_clear_error(ei.value, "missing", METADATA_FILE)


# --------------------------------------------------------------------------------------------
# ONNX files
# --------------------------------------------------------------------------------------------
def _contract_onnx(
    path: Path,
    *,
    image_name="image",
    image_shape=(1, 3, 32, 32),
    thr_name="center_threshold",
    image_type=None,
    outputs=("semantic", "instance", "center_score"),
    k=4,
) -> Path:
    """A tiny ONNX graph with the contract's I/O names (or deliberately wrong ones)."""
    import onnx
    from onnx import TensorProto, helper

    ft = TensorProto.FLOAT if image_type is None else image_type
    b, _, h, w = [
        d if isinstance(d, int) else 1 for d in (1,) * (4 - len(image_shape)) + tuple(image_shape)
    ]
    inputs = [
        helper.make_tensor_value_info(image_name, ft, list(image_shape)),
        helper.make_tensor_value_info(thr_name, TensorProto.FLOAT, [1]),
    ]
    nodes = [
        helper.make_node("ReduceMax", [image_name], ["m"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["m"], ["sem"], to=TensorProto.INT32),
        helper.make_node("Mul", ["sem", "zero"], [outputs[0]]),
        helper.make_node("Mul", ["sem", "zero"], [outputs[1]]),
        helper.make_node(
            "ConstantOfShape",
            ["kshape"],
            ["cs0"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node("Mul", ["cs0", thr_name], [outputs[2]]),
    ]
    inits = [
        helper.make_tensor("zero", TensorProto.INT32, [], [0]),
        helper.make_tensor("kshape", TensorProto.INT64, [2], [b, k]),
    ]
    outs = [
        helper.make_tensor_value_info(outputs[0], TensorProto.INT32, [b, h, w]),
        helper.make_tensor_value_info(outputs[1], TensorProto.INT32, [b, h, w]),
        helper.make_tensor_value_info(outputs[2], TensorProto.FLOAT, [b, k]),
    ]
    g = helper.make_graph(nodes, "contract", inputs, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_contract_onnx_fixture_is_valid(tmp_path):
    """Vacuity guard: the generator's good graph loads and runs, so the bad variants fail for their fault."""
    p = _contract_onnx(tmp_path / "good.onnx")
    with build_segmenter(p, "onnxruntime") as seg:
        r = seg.segment(np.zeros((20, 30, 3), np.uint8))
    assert r.semantic.shape == (20, 30)


ONNX_FAULTS = {
    "wrong_input_name": (dict(image_name="input"), ["'image' missing", "input"]),
    "wrong_threshold_name": (dict(thr_name="thr"), ["'center_threshold' missing"]),
    "wrong_output_name": (
        dict(outputs=("sem", "instance", "center_score")),
        ["'semantic' missing"],
    ),
    "one_channel": (dict(image_shape=(1, 1, 32, 32)), ["shape", "[B,3,H,W]"]),
    "rank3": (dict(image_shape=(3, 32, 32)), ["shape"]),
    "dynamic_hw": (dict(image_shape=(1, 3, "H", "W")), ["shape", "static"]),
    "tiny_hw": (dict(image_shape=(1, 3, 8, 8)), ["shape", "16"]),
    "uint8_image": (dict(image_type=2), ["float32"]),
}


@pytest.mark.parametrize("fault", sorted(ONNX_FAULTS))
def test_onnx_contract_violation(fault, tmp_path):
    kw, words = ONNX_FAULTS[fault]
    p = _contract_onnx(tmp_path / f"{fault}.onnx", **kw)
    with pytest.raises(ModelError) as ei:
        build_segmenter(p, "onnxruntime")
    assert_one_clear_error(ei.value, str(p), *words)


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "text"])
def test_onnx_unreadable(kind, tmp_path):
    """Garbage / empty / truncated .onnx: build_segmenter -> ModelError; the onnxruntime backend
    given the path directly -> BackendError at open. Both name the file."""
    good = _contract_onnx(tmp_path / "good.onnx")
    data = {
        "garbage": np.random.default_rng(1).bytes(3000),
        "empty": b"",
        "truncated": good.read_bytes()[: good.stat().st_size // 2],
        "text": b"ir_version: 8\nthis is not onnx\n",
    }[kind]
    p = tmp_path / f"{kind}.onnx"
    p.write_bytes(data)
    if (
        kind != "empty"
    ):  # an empty protobuf parses as an empty model: it then fails the contract check
        with pytest.raises(ModelError) as ei:
            build_segmenter(p, "onnxruntime")
        assert_one_clear_error(ei.value, str(p))
    else:
        with pytest.raises(ModelError) as ei:
            build_segmenter(p, "onnxruntime")
        assert_one_clear_error(ei.value, str(p), "missing")
    be = create_backend("onnxruntime", p)
    with pytest.raises(BackendError) as ei:
        be.open()
    assert str(p) in str(ei.value) and len(str(ei.value)) <= 2000
    assert not be.is_open


def test_onnxruntime_backend_wrong_names_fails_at_infer_naming_inputs(tmp_path):
    """The backend itself is generic (raw parity graphs have other names): a graph with the wrong
    input names opens, and the first infer names what the model expects."""
    p = _contract_onnx(tmp_path / "renamed.onnx", image_name="input")
    with create_backend("onnxruntime", p) as be:
        with pytest.raises(BackendError) as ei:
            be.infer(
                {
                    "image": np.zeros((1, 3, 32, 32), np.float32),
                    "center_threshold": np.zeros(1, np.float32),
                }
            )
    assert_one_clear_error(ei.value, "input")
    p = _contract_onnx(tmp_path / "shape.onnx")
    with create_backend("onnxruntime", p) as be:
        with pytest.raises(BackendError) as ei:
            be.infer(
                {
                    "image": np.zeros((1, 3, 64, 64), np.float32),
                    "center_threshold": np.zeros(1, np.float32),
                }
            )
    assert_one_clear_error(ei.value, "shape", "(1, 3, 32, 32)")


def test_onnx_sibling_classes_yaml_unreadable(tmp_path):
    p = _contract_onnx(tmp_path / "m.onnx")
    (tmp_path / "classes.yaml").write_text("classes: [ {id: 0, name: a\n")
    with pytest.raises(ModelError) as ei:
        load_model_info(p)
    assert_one_clear_error(ei.value, "classes.yaml")


# --------------------------------------------------------------------------------------------
# ONNX export cache: corrupt entry, atomic writes
# --------------------------------------------------------------------------------------------
def test_export_cache_atomic_on_exception(tmp_path, monkeypatch):
    """An exception in the middle of the export (after bytes hit the disk) leaves neither the
    cache entry nor a temp file; the next call exports a good file."""
    import torch

    info = load_model_info(weights_only_copy(tmp_path / "m"))
    cache = tmp_path / "c"
    real = torch.onnx.export

    def half_then_fail(module, args, f, **kw):
        Path(f).write_bytes(b"\x08\x08partial onnx" * 100)
        raise RuntimeError("simulated failure mid-export")

    monkeypatch.setattr(torch.onnx, "export", half_then_fail)
    with pytest.raises(RuntimeError, match="mid-export"):
        resolve_onnx(info, cache_dir=cache)
    assert leftovers(cache) == []
    monkeypatch.setattr(torch.onnx, "export", real)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    from panoptic_ros.families.model_store import load_model_info, resolve_onnx
    def half_then_die(module, args, f, **kw):
        Path(f).write_bytes(b"partial" * 1000)
        os.kill(os.getpid(), signal.SIGKILL)
    torch.onnx.export = half_then_die
    resolve_onnx(load_model_info(sys.argv[1]), cache_dir=sys.argv[2])
""")


def test_export_cache_sigkill_mid_write_leaves_no_entry(tmp_path):
    """SIGKILL while the ONNX is being written: no file under the entry's name (only an unused temp
    file, which no reader picks up); the next resolve_onnx exports and is loadable."""
    d = weights_only_copy(tmp_path / "m")
    cache = tmp_path / "c"
    r = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(d), str(cache)], capture_output=True, timeout=120
    )
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    names = leftovers(cache)
    assert not [n for n in names if n.endswith(".onnx")], names
    assert all(n.endswith(".tmp") for n in names), names


def test_export_cache_corrupt_entry_named(tmp_path):
    """A cache entry damaged on disk after it was written: the error names the cache file (or the
    entry is re-exported)."""
    info = load_model_info(weights_only_copy(tmp_path / "m"))
    cache = tmp_path / "c"
    p = resolve_onnx(info, cache_dir=cache)
    p.write_bytes(p.read_bytes()[:1000])
    try:
        with create_backend("onnxruntime", resolve_onnx(info, cache_dir=cache)) as be:
            assert be.is_open  # re-exported: fine
    except BackendError as exc:
        assert str(p) in str(exc)


# --------------------------------------------------------------------------------------------
# TensorRT engine cache (GPU-free logic)
# --------------------------------------------------------------------------------------------
META = ec.EngineMeta("ab" * 32, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16", (1, 3, 240, 320))
SLOT = ec.slot_name("default", "fp16", META.input_shape)


@pytest.fixture
def entry(tmp_path):
    d = tmp_path / "engines"
    ec.write_entry(d, SLOT, b"ENGINE" * 1000, META)
    engine, reason = ec.check_entry(d, SLOT, META)
    assert reason is None  # vacuity guard: the untouched entry is reused
    return d, engine


def test_engine_truncated_rebuild_reason(entry):
    d, engine = entry
    engine.write_bytes(engine.read_bytes()[:100])
    _, reason = ec.check_entry(d, SLOT, META)
    assert reason and "truncated" in reason


def test_engine_altered_same_size_rebuild_reason(entry):
    d, engine = entry
    b = bytearray(engine.read_bytes())
    b[10] ^= 0xFF
    engine.write_bytes(bytes(b))
    _, reason = ec.check_entry(d, SLOT, META)
    assert reason and "altered" in reason


@pytest.mark.parametrize(
    "field,value",
    [
        ("tensorrt_version", "10.0.1"),
        ("gpu_name", "NVIDIA A100-SXM4-40GB"),
        ("compute_capability", "8.0"),
        ("onnx_sha256", "cd" * 32),
    ],
)
def test_engine_sidecar_other_gpu_or_version(entry, field, value):
    """The sidecar says another GPU / TensorRT version / ONNX: rebuild, reason names the field and both values."""
    d, engine = entry
    side = d / f"{SLOT}.json"
    data = json.loads(side.read_text())
    data[field] = value
    side.write_text(json.dumps(data))
    _, reason = ec.check_entry(d, SLOT, META)
    assert reason and field in reason and "changed" in reason
    assert (value[:12] if len(value) == 64 else value) in reason


@pytest.mark.parametrize(
    "kind", ["garbage", "empty", "list", "missing", "old_schema", "field_missing"]
)
def test_engine_sidecar_corrupt(entry, kind):
    d, engine = entry
    side = d / f"{SLOT}.json"
    data = json.loads(side.read_text())
    if kind == "garbage":
        side.write_bytes(b"\xff{{{ not json")
    elif kind == "empty":
        side.write_bytes(b"")
    elif kind == "list":
        side.write_text("[]")
    elif kind == "missing":
        side.unlink()
    elif kind == "old_schema":
        side.write_text(json.dumps(dict(data, schema=0)))
    else:
        del data["gpu_name"]
        side.write_text(json.dumps(data))
    _, reason = ec.check_entry(d, SLOT, META)
    assert reason, kind
    assert len(reason) < 400 and "\n" not in reason


def test_engine_missing_with_sidecar(entry):
    d, engine = entry
    engine.unlink()
    _, reason = ec.check_entry(d, SLOT, META)
    assert reason and "missing" in reason


def test_engine_cache_writer_atomic_on_exception(entry, monkeypatch):
    """fsync fails mid-write: the old engine stays intact and valid, no temp file remains."""
    d, engine = entry
    before = sorted(p.name for p in d.iterdir())

    def boom(fd):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        ec.write_entry(d, SLOT, b"NEW" * 5000, META)
    monkeypatch.undo()
    assert sorted(p.name for p in d.iterdir()) == before
    assert ec.check_entry(d, SLOT, META)[1] is None


def test_engine_cache_sidecar_failure_forces_rebuild(tmp_path, monkeypatch):
    """Engine written, then the sidecar write fails: the entry is not trusted (rebuild with a reason)."""
    d = tmp_path / "engines"
    real = ec.atomic_write_json

    def fail(path, obj):
        raise OSError(5, "I/O error (simulated)")

    monkeypatch.setattr(ec, "atomic_write_json", fail)
    with pytest.raises(OSError):
        ec.write_entry(d, SLOT, b"E" * 100, META)
    monkeypatch.setattr(ec, "atomic_write_json", real)
    _, reason = ec.check_entry(d, SLOT, META)
    assert reason and "metadata missing" in reason
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


ENGINE_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from panoptic_ros.backends import engine_cache as ec
    meta = ec.EngineMeta("ab" * 32, "10.3.0", "gpu", "9.0", "fp16", (1, 3, 240, 320))
    ec.write_entry(sys.argv[1], "s", b"OLD" * 100, meta)
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
    ec.write_entry(sys.argv[1], "s", b"NEW" * 100000, meta)
""")


def test_engine_cache_sigkill_mid_write(tmp_path):
    """SIGKILL after the new engine's bytes are written but before the rename: the old entry is
    still complete and valid (size + sha256 match its sidecar)."""
    d = tmp_path / "engines"
    r = subprocess.run(
        [sys.executable, "-c", ENGINE_KILL_SCRIPT, str(d)], capture_output=True, timeout=60
    )
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    meta = ec.EngineMeta("ab" * 32, "10.3.0", "gpu", "9.0", "fp16", (1, 3, 240, 320))
    engine, reason = ec.check_entry(d, "s", meta)
    assert reason is None and engine.read_bytes() == b"OLD" * 100
    assert [
        p.name for p in d.iterdir() if p.name.endswith(".tmp")
    ]  # the killed writer's temp, hidden
    assert all(p.name.startswith(".") for p in d.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------
# params YAML, classes.yaml, taxonomy
# --------------------------------------------------------------------------------------------
BAD_YAML = {
    "missing": None,
    "directory": "DIR",
    "not_utf8": b"\xff\xfe\x00garbage: [",
    "unparsable": b"/**:\n  ros__parameters: [1, 2\n",
    "scalar": b"42\n",
    "binary": bytes(range(256)),
    "no_ros_parameters": b"/**:\n  params: {a: 1}\n",
}


def _write_bad(tmp_path: Path, kind: str, name: str) -> Path:
    p = tmp_path / name
    data = BAD_YAML[kind]
    if data == "DIR":
        p.mkdir()
    elif data is not None:
        p.write_bytes(data)
    return p


@pytest.mark.parametrize("kind", sorted(BAD_YAML))
def test_params_yaml_unreadable(kind, tmp_path):
    p = _write_bad(tmp_path, kind, "params.yaml")
    with pytest.raises(P.ParamsError) as ei:
        P.read_params_file(p)
    assert_one_clear_error(ei.value, str(p))


@pytest.mark.parametrize("kind", sorted(set(BAD_YAML) - {"no_ros_parameters"}))
def test_classes_yaml_unreadable(kind, tmp_path):
    p = _write_bad(tmp_path, kind, "classes.yaml")
    with pytest.raises(TaxonomyError) as ei:
        Taxonomy.load(p)
    assert_one_clear_error(ei.value, str(p))


@pytest.mark.parametrize(
    "classes,words",
    [
        ([(0, "a"), (0, "b")], ["clash", "[0]"]),
        ([(0, "a"), (2, "b")], ["0..1", "gaps"]),
        ([(0, "a"), (1, "a")], ["names clash"]),
        ([], ["no classes"]),
    ],
)
def test_taxonomy_clashing_ids(classes, words, tmp_path):
    import yaml

    p = tmp_path / "classes.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "classes": [
                    {"id": i, "name": n, "is_thing": False, "color": [1, 2, 3]} for i, n in classes
                ]
            }
        )
    )
    with pytest.raises(TaxonomyError) as ei:
        Taxonomy.load(p)
    assert_one_clear_error(ei.value, *words)


# --------------------------------------------------------------------------------------------
# the node executable with bad files / names: one error line, non-zero exit, no traceback, no hang
# --------------------------------------------------------------------------------------------
def _run_node(*ros_args: str, timeout: float = 90.0) -> tuple[int, str]:
    if not EXE.exists():
        pytest.skip(f"{EXE} not installed")
    env = dict(os.environ, RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1")
    r = subprocess.run(
        [str(EXE), "--ros-args", "-r", f"__node:=robust_{os.getpid()}", *ros_args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return r.returncode, r.stdout + r.stderr


def _error_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "ERROR" in ln or ln.startswith("panoptic_node:")]


def _needs_vision_msgs():
    import importlib.util

    if importlib.util.find_spec("vision_msgs") is None:
        pytest.skip("vision_msgs not built (scripts/setup): the node cannot configure")


@pytest.mark.ros
@pytest.mark.parametrize(
    "case",
    [
        "nonexistent_model",
        "unknown_backend",
        "garbage_weights",
        "garbage_onnx",
        "onnx_wrong_inputs",
    ],
)
def test_node_bad_model_exits_with_one_error(case, tmp_path):
    _needs_vision_msgs()
    if case == "nonexistent_model":
        args, words = ["-p", "model:=/nonexistent/model"], ["/nonexistent/model", "not found"]
    elif case == "unknown_backend":
        args, words = ["-p", "backend:=warp_drive"], ["backend", "warp_drive"]
    elif case == "garbage_weights":
        d = model_copy(tmp_path, "m")
        (d / WEIGHTS_FILE).write_bytes(np.random.default_rng(0).bytes(2048))
        args, words = (
            ["-p", f"model:={d}", "-p", "backend:=onnxruntime"],
            [WEIGHTS_FILE, "not a safetensors"],
        )
    elif case == "garbage_onnx":
        p = tmp_path / "m.onnx"
        p.write_bytes(b"\x00garbage" * 50)
        args, words = ["-p", f"model:={p}", "-p", "backend:=onnxruntime"], [str(p)]
    else:
        p = _contract_onnx(tmp_path / "m.onnx", image_name="input")
        args, words = (
            ["-p", f"model:={p}", "-p", "backend:=onnxruntime"],
            [str(p), "'image' missing"],
        )
    env_cache = dict(PANOPTIC_ROS_CACHE=str(tmp_path / "cache"))
    os.environ.update(env_cache)
    try:
        rc, out = _run_node(*args)
    finally:
        os.environ.pop("PANOPTIC_ROS_CACHE", None)
    assert rc != 0, out
    assert "Traceback" not in out, out
    errs = _error_lines(out)
    assert errs, out
    first = errs[0]
    for w in words:
        assert w.lower() in first.lower(), f"{w!r} not in first error line: {first}\n---\n{out}"
    assert len(first) <= MAX_ERROR_CHARS + 200, first


@pytest.mark.ros
@pytest.mark.parametrize("kind", ["missing", "not_utf8", "unparsable", "directory", "binary"])
def test_node_bad_params_file_exits_with_one_error(kind, tmp_path):
    """rcl reads --params-file (the node accepts whatever rcl accepts: a bare scalar file counts
    as empty there); what rcl rejects ends the node with one line naming the file."""
    p = _write_bad(tmp_path, kind, "params.yaml")
    rc, out = _run_node("--params-file", str(p))
    assert rc != 0, out
    assert "Traceback" not in out, out
    errs = _error_lines(out)
    assert errs and str(p) in errs[-1] and "cannot read parameter file" in errs[-1], out
    assert ".c:" not in errs[-1], errs[-1]  # no C source locations from rcl


@pytest.mark.ros
@pytest.mark.parametrize(
    "arg,words",
    [
        ("center_threshold:=abc", ["center_threshold", "type"]),
        ("center_threshold:=7.0", ["center_threshold", "range"]),
        ("threads:=-3", ["threads"]),
    ],
)
def test_node_bad_parameter_override_exits_with_one_error(arg, words):
    rc, out = _run_node("-p", arg)
    assert rc != 0 and "Traceback" not in out, out
    errs = _error_lines(out)
    assert errs and all(w.lower() in errs[-1].lower() for w in words), out
