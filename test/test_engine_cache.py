"""GPU-free TensorRT engine-cache logic (panoptic_ros.backends.engine_cache): keys, invalidation reasons,
builder config mapping, path safety, atomic writes, directory permissions.

Only the calls that need tensorrt + a GPU are skipped (at the end, with the reason)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import stat

import pytest

from panoptic_ros.backends import engine_cache as ec

META = ec.EngineMeta(
    onnx_sha256="a" * 64,
    tensorrt_version="10.3.0",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    precision="fp16",
    input_shape=(1, 3, 240, 320),
)

CHANGES = {
    "onnx_sha256": "b" * 64,
    "tensorrt_version": "10.4.0",
    "gpu_name": "NVIDIA A100-SXM4-40GB",
    "compute_capability": "8.0",
    "precision": "int8",
    "input_shape": (2, 3, 240, 320),
}


def test_same_inputs_same_key():
    again = ec.EngineMeta(**{f.name: getattr(META, f.name) for f in dataclasses.fields(META)})
    assert META.key == again.key == ec.cache_key(META.to_dict())
    assert len(META.key) == 16
    assert ec.why_rebuild(META.to_dict(), again) is None
    # JSON round trip (tuple -> list) keeps the key and says "no change"
    loaded = json.loads(json.dumps(META.to_dict()))
    assert ec.cache_key(loaded) == META.key
    assert ec.why_rebuild(loaded, META) is None


def test_precision_normalised_in_key():
    assert ec.EngineMeta(**{**META.to_dict(), "precision": "FP16"}).key == META.key


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_every_field_changes_key_and_is_named(field):
    new = dataclasses.replace(META, **{field: CHANGES[field]})
    assert new.key != META.key
    why = ec.why_rebuild(META.to_dict(), new)
    assert why is not None and why.startswith(f"{field} changed"), why
    assert ";" not in why  # only that field


def test_why_names_old_and_new_values_and_several_fields():
    new = dataclasses.replace(META, tensorrt_version="10.4.0", gpu_name="NVIDIA L4")
    why = ec.why_rebuild(META.to_dict(), new)
    assert "tensorrt_version changed (10.3.0 -> 10.4.0)" in why
    assert "gpu_name changed (NVIDIA H100 80GB HBM3 -> NVIDIA L4)" in why
    sha = ec.why_rebuild(META.to_dict(), dataclasses.replace(META, onnx_sha256="b" * 64))
    assert "onnx_sha256 changed (aaaaaaaaaaaa... -> bbbbbbbbbbbb...)" == sha
    shape = ec.why_rebuild(META.to_dict(), dataclasses.replace(META, input_shape=(1, 3, 480, 640)))
    assert shape == "input_shape changed (1x3x240x320 -> 1x3x480x640)"


def test_why_rebuild_missing_and_schema():
    assert ec.why_rebuild(None, META) == "no cached engine"
    old = META.to_dict()
    del old["gpu_name"]
    assert "gpu_name missing from cache metadata" in ec.why_rebuild(old, META)
    assert "schema changed" in ec.why_rebuild({**META.to_dict(), "schema": 0}, META)


def test_builder_settings_mapping():
    s32 = ec.builder_settings("fp32", 256)
    assert s32.flags == () and not s32.calibrate and s32.memory_pools == (("WORKSPACE", 256 << 20),)
    s16 = ec.builder_settings("FP16")
    assert s16.flags == ("FP16",) and s16.precision == "fp16" and not s16.calibrate
    assert s16.memory_pools == (("WORKSPACE", ec.DEFAULT_WORKSPACE_MB << 20),)
    s8 = ec.builder_settings("int8", calibration_batches=8)
    assert s8.flags == ("INT8", "FP16") and s8.calibrate and s8.calibration_batches == 8
    with pytest.raises(ec.EngineCacheError, match="unknown precision 'bf8'"):
        ec.builder_settings("bf8")
    with pytest.raises(ec.EngineCacheError, match="workspace_mb must be positive"):
        ec.builder_settings("fp16", 0)


@pytest.mark.parametrize(
    "bad",
    ["../evil", "a/b", "a\\b", "..", ".hidden", "", "x\0y", "c:engine", " lead", "a..b", "x" * 201],
)
def test_unsafe_names_rejected(tmp_path, bad):
    with pytest.raises(ec.EngineCacheError):
        ec.sanitize_name(bad)
    with pytest.raises(ec.EngineCacheError):
        ec.cache_path(tmp_path, bad)


def test_cache_path_and_slot(tmp_path):
    p = ec.cache_path(tmp_path, "default_fp16_b1_240x320.engine")
    assert p.parent == tmp_path.resolve()
    assert ec.slot_name("default", "FP16", (1, 3, 240, 320)) == "default_fp16_b1_240x320"
    # model names with separators are flattened, never used as paths
    assert ec.slot_name("../../etc/passwd", "fp32", (2, 3, 8, 8)) == "------etc-passwd_fp32_b2_8x8"
    engine, sidecar = ec.engine_paths(tmp_path, "m_fp16_b1_8x8")
    assert (engine.name, sidecar.name) == ("m_fp16_b1_8x8.engine", "m_fp16_b1_8x8.json")
    with pytest.raises(ec.EngineCacheError):
        ec.engine_paths(tmp_path, "../m")
    with pytest.raises(ec.EngineCacheError, match=r"\[B, 3, H, W\]"):
        ec.slot_name("m", "fp16", (3, 8, 8))
    assert ec.timing_cache_name("10.3.0", "9.0") == "timing-trt10.3.0-sm90.cache"


def test_symlink_escape_rejected(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "link.engine").symlink_to(outside / "x.engine")
    with pytest.raises(ec.EngineCacheError, match="escapes cache dir"):
        ec.cache_path(cache, "link.engine")


def test_cache_dir_created_user_only(tmp_path):
    d = ec.ensure_cache_dir(tmp_path / "a" / "engines")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    ec.ensure_cache_dir(loose)  # ours: tightened
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises((ec.EngineCacheError, FileExistsError)):
        ec.ensure_cache_dir(f)


def test_atomic_write_replaces_and_is_private(tmp_path):
    p = tmp_path / "x.engine"
    ec.atomic_write_bytes(p, b"old")
    ec.atomic_write_bytes(p, b"new contents")
    assert p.read_bytes() == b"new contents"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["x.engine"]


def test_stale_temp_files_are_swept_but_not_fresh_ones_or_engines(tmp_path):
    old = [tmp_path / ".a.engine.1.tmp", tmp_path / "timing.cache.2.tmp"]
    fresh, engine = tmp_path / ".b.engine.3.tmp", tmp_path / "a.engine"
    for p in (*old, fresh, engine):
        p.write_bytes(b"x")
    (tmp_path / "link.tmp").symlink_to(engine)
    for p in (*old, engine):
        os.utime(p, (0, 0))
    assert sorted(ec.remove_stale_temp_files(tmp_path)) == sorted(old)
    assert sorted(os.listdir(tmp_path)) == sorted([fresh.name, engine.name, "link.tmp"])
    assert ec.remove_stale_temp_files(tmp_path, max_age_s=-1) == [fresh]


def test_atomic_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    p = tmp_path / "x.engine"
    ec.atomic_write_bytes(p, b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    # failure after the data was written to the temp file, before the rename
    monkeypatch.setattr(ec.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        ec.atomic_write_bytes(p, b"new" * 1000)
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["x.engine"]

    # failure of the rename itself
    def no_replace(a, b):
        raise PermissionError("replace refused")

    monkeypatch.setattr(ec.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        ec.atomic_write_bytes(tmp_path / "new.engine", b"data")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["x.engine"]

    # interrupted write (bad payload type) -> no temp file left, target never created
    with pytest.raises(TypeError):
        ec.atomic_write_bytes(tmp_path / "new.engine", "not bytes")  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == ["x.engine"]


def test_entry_roundtrip_and_rebuild_reasons(tmp_path):
    cache = tmp_path / "engines"
    slot = ec.slot_name("default", META.precision, META.input_shape)
    engine, reason = ec.check_entry(tmp_path, slot, META)
    assert reason.startswith("no cached engine")

    blob = os.urandom(4096)
    path = ec.write_entry(cache, slot, blob, META, onnx_path="/x/model.onnx")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert path == cache.resolve() / f"{slot}.engine"
    side = json.loads(path.with_suffix(".json").read_text())
    assert (
        side["key"] == META.key
        and side["engine_bytes"] == 4096
        and side["onnx_path"] == "/x/model.onnx"
    )
    assert ec.check_entry(cache, slot, META) == (path, None)

    # environment change -> reason names the field
    _, why = ec.check_entry(cache, slot, dataclasses.replace(META, tensorrt_version="10.4.0"))
    assert why == "tensorrt_version changed (10.3.0 -> 10.4.0)"

    # truncated engine file -> rebuild with reason
    path.write_bytes(blob[:1000])
    _, why = ec.check_entry(cache, slot, META)
    assert "truncated" in why and "1000 bytes" in why

    # same size, altered bytes
    path.write_bytes(bytes(4096))
    _, why = ec.check_entry(cache, slot, META)
    assert "altered" in why

    # engine file deleted
    path.unlink()
    _, why = ec.check_entry(cache, slot, META)
    assert "missing" in why

    # corrupt / truncated sidecar
    path.write_bytes(blob)
    path.with_suffix(".json").write_text('{"onnx_sha256": "aa')
    _, why = ec.check_entry(cache, slot, META)
    assert "unreadable cache metadata" in why

    # engine without sidecar
    path.with_suffix(".json").unlink()
    _, why = ec.check_entry(cache, slot, META)
    assert "sidecar" in why


def test_sha256_file(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"abc")
    assert ec.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None,
    reason="building/deserialising a TensorRT engine needs the 'tensorrt' package and an NVIDIA GPU (absent here)",
)
def test_tensorrt_engine_build_and_reuse(tmp_path):  # pragma: no cover - GPU machines only
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT engine build needs an NVIDIA GPU; torch.cuda.is_available() is False")
    from panoptic_ros.backends import create_backend
    from panoptic_ros.families.model_store import load_model_info

    info = load_model_info("default")
    logs: list[str] = []
    be = create_backend("tensorrt", info, precision="fp16", cache_dir=tmp_path, logger=logs.append)
    with be:
        assert be.build_reason and "no cached engine" in be.build_reason
    be2 = create_backend("tensorrt", info, precision="fp16", cache_dir=tmp_path, logger=logs.append)
    with be2:
        assert be2.build_reason is None
    # corrupt the engine but keep the sidecar consistent -> deserialisation failure -> rebuild
    eng = be2.engine_path
    eng.write_bytes(b"\0" * 64)
    side = json.loads(eng.with_suffix(".json").read_text())
    import hashlib

    side.update(engine_bytes=64, engine_sha256=hashlib.sha256(b"\0" * 64).hexdigest())
    eng.with_suffix(".json").write_text(json.dumps(side))
    be3 = create_backend("tensorrt", info, precision="fp16", cache_dir=tmp_path, logger=logs.append)
    with be3:
        assert be3.build_reason.startswith("cached engine failed to deserialise")
