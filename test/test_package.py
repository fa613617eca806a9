"""Package metadata for the robot path (colcon build with an apt-installed ROS 2): package.xml and setup.py.

ROS-free static checks: package.xml parses with catkin_pkg (format 3, ament_python, same name as
setup.py), every ROS package that the code imports is declared as a dependency (so `rosdep install`
brings it), every third-party Python module the code imports is declared, setup.py's data_files
point at files that exist and install what the node needs under share/panoptic_ros, and the console
scripts exist both in setup.py and (in the dev venv) on the venv's bin/.
"""

from __future__ import annotations

import ast
import sys
import sysconfig
from glob import glob
from pathlib import Path

import pytest

catkin_pkg_package = pytest.importorskip("catkin_pkg.package")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XML = ROOT / "package.xml"
SETUP_PY = ROOT / "setup.py"

# ROS packages that may be imported but are not PyPI-wheel packages in the dev venv.
KNOWN_ROS_PACKAGES = {
    "launch",
    "launch_ros",
    "vision_msgs",
    "rclpy",
    "ament_index_python",
    "rosidl_runtime_py",
}

# Third-party (non-ROS) Python modules -> acceptable rosdep keys. Optional accelerators
# (tensorrt, pycuda) are deliberately not declared: the node works without them.
THIRD_PARTY_KEYS = {
    "numpy": {"python3-numpy"},
    "cv2": {"python3-opencv"},
    "yaml": {"python3-yaml"},
    "tqdm": {"python3-tqdm"},
    "psutil": {"python3-psutil"},
    "onnxruntime": {"python3-onnxruntime-pip", "python3-onnxruntime"},
    "rosbags": {"python3-rosbags-pip", "python3-rosbags"},
    "onnx": {"python3-onnx", "python3-onnx-pip"},
}
OPTIONAL_MODULES = {
    "torch",  # torch backend, training, export (test/test_torch_free.py: the node runs without it)
    "safetensors",  # only on torch paths (weights -> torch state dict)
    "tensorrt",
    "pycuda",
    "onnxscript",
    "hotcoco",
    "pycocotools",
    "matplotlib",
    "PIL",
    "scipy",
}


def _package():
    return catkin_pkg_package.parse_package(str(PACKAGE_XML))


def _setup_call() -> ast.Call:
    tree = ast.parse(SETUP_PY.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return node
    raise AssertionError("setup.py has no setup(...) call")


def _setup_namespace() -> dict:
    """Module-level constants of setup.py (package_name ...), without running setup()."""
    tree = ast.parse(SETUP_PY.read_text())
    ns: dict = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                ns[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return ns


def _eval_setup_expr(expr: ast.expr):
    """Evaluate a setup.py expression that may use glob() and the module constants."""
    code = compile(ast.Expression(expr), str(SETUP_PY), "eval")
    cwd = Path.cwd()
    try:
        import os

        os.chdir(ROOT)  # setup.py globs relative to its directory
        return eval(
            code,
            {"glob": glob, "__builtins__": {"sorted": sorted, "list": list}},
            _setup_namespace(),
        )
    finally:
        os.chdir(cwd)


def _setup_kwarg(name: str):
    call = _setup_call()
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    raise AssertionError(f"setup() has no {name}=")


def _declared_run_deps() -> set[str]:
    pkg = _package()
    pkg.evaluate_conditions({"ROS_VERSION": "2", "ROS_PYTHON_VERSION": "3", "ROS_DISTRO": "kilted"})
    deps = pkg.exec_depends + pkg.run_depends + pkg.build_export_depends
    return {d.name for d in deps if d.evaluated_condition is not False}


def _imported_top_level_modules() -> dict[str, set[str]]:
    """top-level module -> files importing it, for panoptic_ros/ and launch/."""
    found: dict[str, set[str]] = {}
    files = sorted((ROOT / "panoptic_ros").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                found.setdefault(n.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _ament_index_packages() -> set[str]:
    """ROS packages registered in this venv's ament index (the PyPI ROS wheels register there)."""
    index = Path(sys.prefix) / "share" / "ament_index" / "resource_index" / "packages"
    found = {p.name for p in index.iterdir()} if index.is_dir() else set()
    return found - {"panoptic_ros"}  # itself: scripts/setup registers it (ament prefix step)


def test_package_xml_parses_as_format_3():
    pkg = _package()
    assert pkg.package_format == 3
    assert pkg.name == "panoptic_ros"
    assert pkg.version and pkg.description and pkg.licenses and pkg.maintainers
    assert pkg.get_build_type() == "ament_python"
    # catkin_pkg's own validation (names, versions, maintainers ...)
    pkg.validate()


def test_package_xml_name_and_version_match_setup_py():
    pkg = _package()
    ns = _setup_namespace()
    name = _eval_setup_expr(_setup_kwarg("name"))
    version = _eval_setup_expr(_setup_kwarg("version"))
    assert name == pkg.name == ns.get("package_name")
    assert version == pkg.version


def test_stdlib_and_test_dependencies_are_not_mixed_up():
    pkg = _package()
    test_deps = {d.name for d in pkg.test_depends}
    assert "python3-pytest" in test_deps
    assert not (test_deps & _declared_run_deps()), "a dependency is both exec and test"


def test_every_imported_ros_package_is_declared():
    imported = _imported_top_level_modules()
    ros_packages = _ament_index_packages() | KNOWN_ROS_PACKAGES
    declared = _declared_run_deps()
    missing = {
        m: sorted(files) for m, files in imported.items() if m in ros_packages and m not in declared
    }
    assert not missing, (
        f"ROS packages imported but not declared in package.xml (<exec_depend>): {missing}"
    )


def test_every_imported_third_party_module_is_declared():
    imported = _imported_top_level_modules()
    stdlib = set(sys.stdlib_module_names)
    ros_packages = _ament_index_packages() | KNOWN_ROS_PACKAGES
    declared = _declared_run_deps()
    problems = {}
    for mod, files in imported.items():
        if mod in stdlib or mod in ros_packages or mod == "panoptic_ros" or mod in OPTIONAL_MODULES:
            continue
        keys = THIRD_PARTY_KEYS.get(mod)
        if keys is None:
            problems[mod] = (
                f"unknown module imported by {sorted(files)}: add its rosdep key to package.xml "
                f"and to THIRD_PARTY_KEYS here (or to OPTIONAL_MODULES if the node works without it)"
            )
        elif not keys & declared:
            problems[mod] = f"imported by {sorted(files)} but none of {sorted(keys)} is declared"
    assert not problems, problems


def test_data_files_exist_and_cover_the_share_layout():
    data_files = _eval_setup_expr(_setup_kwarg("data_files"))
    dests = {}
    for dest, files in data_files:
        for f in files:
            assert (ROOT / f).is_file(), f"setup.py data_files: {f} (for {dest}) does not exist"
        dests.setdefault(dest, []).extend(files)
    assert ["resource/panoptic_ros"] == dests.get("share/ament_index/resource_index/packages")
    assert (ROOT / "resource" / "panoptic_ros").is_file()
    assert "package.xml" in dests.get("share/panoptic_ros", [])
    for sub, expected in (
        ("launch", "launch/panoptic.launch.py"),
        ("config", "config/panoptic.yaml"),
        ("models/default", "models/default/metadata.json"),
    ):
        files = dests.get(f"share/panoptic_ros/{sub}", [])
        assert expected in files, (
            f"share/panoptic_ros/{sub} does not install {expected} (has {files})"
        )
    # every launch/config/model file in the tree is installed
    for pattern, dest in (
        ("launch/*.py", "launch"),
        ("config/*.yaml", "config"),
        ("models/default/*", "models/default"),
    ):
        for f in glob(str(ROOT / pattern)):
            rel = str(Path(f).relative_to(ROOT))
            assert rel in dests.get(f"share/panoptic_ros/{dest}", []), (
                f"{rel} is not installed by setup.py"
            )


def test_console_scripts_declared():
    entry_points = _eval_setup_expr(_setup_kwarg("entry_points"))
    scripts = {
        s.split("=")[0].strip(): s.split("=")[1].strip() for s in entry_points["console_scripts"]
    }
    assert scripts.get("panoptic_node") == "panoptic_ros.ros.node_main:main"
    assert scripts.get("panoptic-ros") == "panoptic_ros.cli:main"


def test_setup_cfg_installs_scripts_where_ros2_run_finds_them():
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    assert cfg.get("develop", "script_dir") == "$base/lib/panoptic_ros"
    assert cfg.get("install", "install_scripts") == "$base/lib/panoptic_ros"


def test_console_scripts_on_venv_bin():
    """In the dev venv (scripts/setup), both console scripts are on the venv's bin/."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a venv")
    bindir = Path(sysconfig.get_path("scripts"))
    for name in ("panoptic_node", "panoptic-ros"):
        assert (bindir / name).is_file(), f"{name} missing from {bindir} (run ./scripts/setup)"


def test_workspace_crawl_finds_only_this_package():
    """colcon/rosdep in a robot workspace must see panoptic_ros only, never interfaces/vision_msgs
    (the venv-only copy would shadow the distro's vision_msgs and make rosdep skip it)."""
    from catkin_pkg.packages import find_packages

    found = {
        pkg.name for pkg in find_packages(str(ROOT), exclude_paths=[str(ROOT / ".venv")]).values()
    }
    assert found == {"panoptic_ros"}, found
    assert (ROOT / "interfaces" / "vision_msgs" / "COLCON_IGNORE").is_file()
    assert (ROOT / "interfaces" / "vision_msgs" / "package.xml").is_file()
