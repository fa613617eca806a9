"""Security basics (issue #8): loading a model never executes code, caches are private, and
names from parameters cannot write outside the cache directory.

* no pickle anywhere on the model path: the package source is parsed (AST, not grep, so
  comments and strings do not count) for ``torch.load`` without ``weights_only=True``,
  ``pickle.load(s)``, ``np.load(..., allow_pickle=True)``, ``yaml.load`` without a safe loader,
  ``yaml.unsafe_load`` / ``full_load``, ``marshal`` / ``dill`` / ``joblib`` / ``cloudpickle``;
* a weights file that is really a pickle (with a payload that would leave a marker file) is
  rejected with a clear error, and the payload never runs;
* the ONNX export cache and the TensorRT engine cache are created 0o700, their files 0o600;
* engine cache names with ``..``, ``/`` etc. are rejected; ONNX cache names are content hashes;
  a symlink planted at a cache entry's name is replaced, not followed.
"""

from __future__ import annotations

import ast
import os
import pickle
import re
import shutil
import stat
from pathlib import Path

import pytest
from model_helpers import weights_only_copy

from panoptic_ros.backends import engine_cache as ec
from panoptic_ros.families.model_store import (
    WEIGHTS_FILE,
    ModelError,
    default_cache_dir,
    default_model_dir,
    load_model_info,
    load_state_dict,
    load_torch_model,
    resolve_onnx,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("panoptic_ros", "scripts") for p in (ROOT / d).rglob("*.py"))


def _default_dir() -> Path:
    try:
        return default_model_dir()
    except ModelError:
        pytest.skip("no default model in models/default yet")


# --------------------------------------------------------------------------------------------
# no pickle loading anywhere
# --------------------------------------------------------------------------------------------
def _call_name(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Calls that can unpickle / execute data, as 'file:line: reason'."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for m in mods:
                if m.split(".")[0] in (
                    "pickle",
                    "cPickle",
                    "dill",
                    "cloudpickle",
                    "joblib",
                    "marshal",
                    "shelve",
                ):
                    found.append(f"{filename}:{node.lineno}: imports {m}")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node.func)
        last = name.rsplit(".", 1)[-1]
        if name.endswith("torch.load"):
            if not _is_true(_kw(node, "weights_only")):
                found.append(f"{filename}:{node.lineno}: {name}( without weights_only=True")
        elif last in ("load", "loads") and name.split(".")[0] in (
            "pickle",
            "cPickle",
            "dill",
            "cloudpickle",
            "joblib",
            "marshal",
            "shelve",
        ):
            found.append(f"{filename}:{node.lineno}: {name}(")
        elif name in ("np.load", "numpy.load") and _is_true(_kw(node, "allow_pickle")):
            found.append(f"{filename}:{node.lineno}: {name}(allow_pickle=True)")
        elif name in (
            "yaml.unsafe_load",
            "yaml.full_load",
            "yaml.unsafe_load_all",
            "yaml.full_load_all",
        ):
            found.append(f"{filename}:{node.lineno}: {name}(")
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or "Safe" not in ast.unparse(loader):
                found.append(f"{filename}:{node.lineno}: {name}( without a SafeLoader")
        elif name in ("pd.read_pickle", "pandas.read_pickle") or last == "read_pickle":
            found.append(f"{filename}:{node.lineno}: {name}(")
    return found


def test_checker_finds_unsafe_calls():
    """Vacuity guard: the AST checker flags each pattern it is meant to catch (and not safe forms)."""
    bad = """
import pickle
import numpy as np, torch, yaml
torch.load(f)
torch.load(f, weights_only=False)
pickle.loads(b)
np.load(p, allow_pickle=True)
yaml.load(s)
yaml.unsafe_load(s)
"""
    good = """
import numpy as np, torch, yaml
torch.load(f, weights_only=True)
np.load(p)
yaml.safe_load(s)
yaml.load(s, Loader=yaml.SafeLoader)
"""
    assert len(unsafe_calls(bad)) == 7, unsafe_calls(bad)
    assert unsafe_calls(good) == []


def test_no_pickle_loading_in_package():
    assert SOURCES and any(p.name == "model_store.py" for p in SOURCES)
    problems = [f for p in SOURCES for f in unsafe_calls(p.read_text(), str(p.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)


def test_grep_torch_load_and_allow_pickle():
    """Plain text grep as a second net (catches e.g. getattr(torch, 'load') style code in strings too)."""
    pat = re.compile(
        r"torch\.load\((?![^)]*weights_only\s*=\s*True)|pickle\.loads?\(|allow_pickle\s*=\s*True"
    )
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {ln.strip()}"
        for p in SOURCES
        for i, ln in enumerate(p.read_text().splitlines(), 1)
        if pat.search(ln) and not ln.lstrip().startswith("#")
    ]
    assert not hits, "\n".join(hits)


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_weights(d: Path, marker: Path, kind: str) -> None:
    if kind == "plain_pickle":
        data = pickle.dumps({"w": _Payload(str(marker))}, protocol=2)
    elif kind == "torch_save":
        import io

        import torch

        buf = io.BytesIO()
        torch.save({"w": torch.zeros(3), "x": _Payload(str(marker))}, buf)
        data = buf.getvalue()
    else:  # a pickle with a safetensors-looking prefix: length field that fits the file
        body = pickle.dumps(_Payload(str(marker)))
        data = len(body).to_bytes(8, "little") + body
    (d / WEIGHTS_FILE).write_bytes(data)


@pytest.mark.parametrize("kind", ["plain_pickle", "torch_save", "disguised"])
def test_pickle_weights_rejected_payload_never_runs(kind, tmp_path, monkeypatch):
    d = tmp_path / "m"
    shutil.copytree(_default_dir(), d)
    marker = tmp_path / "PWNED"
    _pickle_weights(d, marker, kind)
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError) as ei:
        load_state_dict(d / WEIGHTS_FILE)
    assert WEIGHTS_FILE in str(ei.value)
    with pytest.raises(ModelError):
        load_torch_model(load_model_info(d))
    from panoptic_ros.backends import BackendError
    from panoptic_ros.families.factory import build_segmenter

    for backend in ("onnxruntime", "torch"):
        with pytest.raises((ModelError, BackendError)) as ei:
            build_segmenter(d, backend)
        assert WEIGHTS_FILE in str(ei.value)
    assert not marker.exists(), "unpickling payload ran"


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt", ".bin"])
def test_pickle_model_file_extensions_refused(suffix, tmp_path):
    p = tmp_path / f"model{suffix}"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match="not a model directory or an .onnx file"):
        load_model_info(p)


# --------------------------------------------------------------------------------------------
# cache directories: private
# --------------------------------------------------------------------------------------------
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o002)  # a permissive umask must not make caches group/world-accessible
    yield
    os.umask(old)


def test_default_cache_dir_private(tmp_path, monkeypatch, loose_umask):
    target = tmp_path / "a" / "b" / "cache"
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(target))
    d = default_cache_dir()
    assert d == target and _mode(d) == 0o700


def test_onnx_export_cache_private(tmp_path, loose_umask):
    info = load_model_info(weights_only_copy(tmp_path / "m"))
    cache = tmp_path / "onnx_cache"
    p = resolve_onnx(info, cache_dir=cache)
    assert _mode(cache) == 0o700, oct(_mode(cache))
    assert _mode(p) & 0o077 == 0, f"cached ONNX {p.name} mode {oct(_mode(p))}"


def test_onnx_export_cache_existing_loose_dir_tightened(tmp_path):
    """A pre-existing cache dir others can write to (they could swap the cached graph) is made 0o700."""
    info = load_model_info(weights_only_copy(tmp_path / "m"))
    cache = tmp_path / "loose"
    cache.mkdir()
    os.chmod(cache, 0o777)
    resolve_onnx(info, cache_dir=cache)
    assert _mode(cache) == 0o700, oct(_mode(cache))


def test_engine_cache_private(tmp_path, loose_umask):
    d = ec.ensure_cache_dir(tmp_path / "x" / "engines")
    assert _mode(d) == 0o700
    meta = ec.EngineMeta("ab" * 32, "10.3.0", "gpu", "9.0", "fp16", (1, 3, 240, 320))
    engine = ec.write_entry(d, "s", b"E" * 64, meta)
    for f in d.iterdir():
        assert _mode(f) == 0o600, f"{f.name}: {oct(_mode(f))}"
    assert engine.parent == d.resolve()
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    assert _mode(ec.ensure_cache_dir(loose)) == 0o700


def test_default_engine_dir_under_private_cache(tmp_path, monkeypatch, loose_umask):
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(tmp_path / "c"))
    from panoptic_ros.backends.tensorrt import default_engine_dir

    d = ec.ensure_cache_dir(default_engine_dir())
    assert d.parent == (tmp_path / "c") and _mode(d) == 0o700 and _mode(d.parent) == 0o700


# --------------------------------------------------------------------------------------------
# names and paths
# --------------------------------------------------------------------------------------------
BAD_NAMES = [
    "..",
    "../x",
    "a/../../b",
    "/etc/passwd",
    "a/b",
    "a\\b",
    ".hidden",
    "x\0y",
    "C:evil",
    "",
    " a",
    "a" * 201,
    "...",
    "x..y",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_engine_cache_rejects_unsafe_names(name, tmp_path):
    with pytest.raises(ec.EngineCacheError):
        ec.sanitize_name(name)
    with pytest.raises(ec.EngineCacheError):
        ec.engine_paths(tmp_path, name)
    with pytest.raises(ec.EngineCacheError):
        ec.cache_path(tmp_path, name)


@pytest.mark.parametrize(
    "model_name",
    ["../../etc/passwd", "/abs/model", "a\\b", "..", "x\0y", "../..", "m:1", "日本語", ""],
)
def test_slot_from_hostile_model_name_stays_inside(model_name, tmp_path):
    slot = ec.slot_name(model_name, "fp16", (1, 3, 240, 320))
    engine, side = ec.engine_paths(tmp_path, slot)
    assert engine.parent == tmp_path.resolve() and side.parent == tmp_path.resolve()
    assert "/" not in slot and ".." not in slot and not slot.startswith(".")


@pytest.mark.parametrize(
    "version,cc", [("../../x", "9.0"), ("10.3/../../y", "../8"), ("10.3.0", "9.0")]
)
def test_timing_cache_name_safe(version, cc, tmp_path):
    name = ec.timing_cache_name(version, cc)
    assert ec.cache_path(tmp_path, name).parent == tmp_path.resolve()


def test_planted_symlink_refused(tmp_path):
    """A symlink planted at an entry's name (pointing outside the cache) is refused by both the
    reader and the writer with a clear error; its target is untouched."""
    d = ec.ensure_cache_dir(tmp_path / "engines")
    outside = tmp_path / "victim.txt"
    outside.write_text("precious")
    meta = ec.EngineMeta("ab" * 32, "10.3.0", "gpu", "9.0", "fp16", (1, 3, 240, 320))
    engine, side = ec.engine_paths(d, "s")
    engine.symlink_to(outside)
    side.symlink_to(outside)
    with pytest.raises(ec.EngineCacheError, match="escapes cache dir"):
        ec.check_entry(d, "s", meta)
    with pytest.raises(ec.EngineCacheError, match="escapes cache dir"):
        ec.write_entry(d, "s", b"ENGINE", meta)
    assert outside.read_text() == "precious"


def test_onnx_cache_names_are_hashes_inside_cache(tmp_path):
    """The export cache file name is <model dir name>-<HxW>-b<B>-<24 hex sha256> in the cache dir,
    whatever the model directory is called."""
    for dirname in ("plain", "we ird..name", "-leading"):
        d = weights_only_copy(tmp_path / "models" / dirname)
        p = resolve_onnx(load_model_info(d), cache_dir=tmp_path / "cache")
        assert p.parent == tmp_path / "cache"
        assert re.fullmatch(re.escape(dirname) + r"-\d+x\d+-b1-[0-9a-f]{24}\.onnx", p.name), p.name
    # same weights + settings -> same key, independent of the directory name
    keys = {p.name.rsplit("-", 1)[1] for p in (tmp_path / "cache").glob("*.onnx")}
    assert len(keys) == 1
