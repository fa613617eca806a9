"""The runtime works with torch not installed: the default model ships its exported ONNX beside the
weights (models/default/model-*.onnx), so ONNX Runtime needs no on-demand export.

Each check runs in a fresh interpreter whose import system refuses ``torch`` (a sys.meta_path
finder that raises ImportError, which is what a missing package looks like), so nothing in the
test process (which has torch) can leak in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: modules that are torch by definition (the network and the torch-only training entry points)
TORCH_MODULES = {"panoptic_ros.families.panoptic_net"}

BLOCKER = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (blocked by test_torch_free)")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path, monkeypatch):
    """An empty export cache: the shipped ONNX, not an earlier export, must be what runs."""
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(tmp_path / "cache"))


def _run(code: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def test_blocker_blocks_torch():
    r = _run("import torch")
    assert r.returncode != 0 and "blocked by test_torch_free" in r.stderr


def test_default_model_ships_its_onnx():
    """The shipped export matches the weights + metadata (else the store would need torch)."""
    from panoptic_ros.families.model_store import load_model_info, shipped_onnx_name
    from panoptic_ros.families.quantize import int8_onnx_name

    info = load_model_info("default")
    shipped = info.directory / shipped_onnx_name(info)
    int8 = info.directory / int8_onnx_name(info)  # precision int8 (test/test_quantize.py)
    stale = sorted(p.name for p in info.directory.glob("model-*.onnx") if p not in (shipped, int8))
    assert shipped.is_file(), (
        f"{shipped.name} missing (weights, metadata or exporter changed): "
        "run `panoptic-ros export --ship --parity 20` and commit it"
    )
    assert not stale, f"stale shipped exports in {info.directory}: {stale}"


def test_segmenter_runs_default_model_without_torch():
    r = _run(
        """
        import sys
        import numpy as np
        from panoptic_ros.families.factory import build_segmenter
        from panoptic_ros.core.synthetic import generate_scene

        seg = build_segmenter("default", "onnxruntime")
        scene = generate_scene(3, 240, 320)
        res = seg.segment(scene.image)
        assert res.semantic.shape == (240, 320), res.semantic.shape
        agree = float((res.semantic == scene.semantic).mean())
        assert agree > 0.5, agree  # the trained model, not garbage
        seg8 = build_segmenter("default", "onnxruntime", precision="int8")  # shipped QDQ graph
        assert seg8.segment(scene.image).semantic.shape == (240, 320)
        assert not [m for m in sys.modules if m.split(".")[0] == "torch"]
        print("OK", agree)
        """
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_onnxruntime_path_does_not_load_an_installed_torch():
    """With torch installed, the ONNX Runtime path still never imports it (memory, start time)."""
    pytest.importorskip("torch")
    code = """
import sys
import numpy as np
from panoptic_ros.families.factory import build_segmenter

seg = build_segmenter("default", "onnxruntime")
seg.segment(np.zeros((120, 160, 3), np.uint8))
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
assert not loaded, loaded[:5]
print("OK")
"""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env, cwd=REPO
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_eval_cli_without_torch():
    r = _run(
        """
        import sys
        from panoptic_ros.cli import main
        sys.exit(main(sys.argv[1:]))
        """,
        "eval",
        "--synthetic",
        "3",
        "--model",
        "default",
        "--backend",
        "onnxruntime",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PQ" in r.stdout + r.stderr


def test_no_runtime_module_imports_torch():
    """Importing any module of the package (except the torch network itself) pulls no torch:
    torch is imported lazily, only on the torch backend / export / training paths."""
    r = _run(
        f"""
        import importlib, pkgutil, sys
        import panoptic_ros

        skip = {sorted(TORCH_MODULES)!r}
        bad = []
        for m in pkgutil.walk_packages(panoptic_ros.__path__, "panoptic_ros."):
            if m.name in skip or m.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(m.name)
            except ImportError as exc:
                bad.append(f"{{m.name}}: {{exc}}")
        assert not bad, bad
        assert not [m for m in sys.modules if m.split(".")[0] == "torch"]
        print("OK")
        """
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.parametrize("cmd", [["--help"], ["export", "--help"]])
def test_cli_help_without_torch(cmd):
    r = _run("import sys\nfrom panoptic_ros.cli import main\nsys.exit(main(sys.argv[1:]))", *cmd)
    assert r.returncode == 0, r.stderr[-2000:]
