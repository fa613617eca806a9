"""Launch files, parameter files and the RViz config agree with the node (ROS-free static checks).

launch/launch_ros are not installable in every environment, so the main checks parse the
launch files' AST: every parameter they set is declared by the node (params.SCHEMA) with a
valid value, every executable is a console script in setup.py, every launch argument has a
description, every remapped input is a topic the node subscribes. Where launch_ros imports,
the launch descriptions are also built for real.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from panoptic_ros.ros import params

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
OUTPUT_LEAVES = {
    "semantic",
    "instance",
    "panoptic",
    "panoptic_rgb",
    "overlay",
    "detections",
    "label_info",
}


def console_scripts() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    return {ast.literal_eval(e).split("=")[0].strip() for e in v.elts}
    raise AssertionError("setup.py declares no console_scripts")


def node_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Node"
    ]


def kwarg(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_launch_files_exist():
    names = {p.name for p in LAUNCH_FILES}
    assert {"panoptic.launch.py", "multi_camera.launch.py"} <= names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_console_scripts_and_declared_parameters(path):
    calls = node_calls(path)
    assert calls, f"{path.name} starts no Node"
    scripts = console_scripts()
    for call in calls:
        assert ast.literal_eval(kwarg(call, "package")) == "panoptic_ros"
        exe = ast.literal_eval(kwarg(call, "executable"))
        assert exe in scripts, (
            f"{path.name}: executable {exe!r} is not a console script in setup.py ({scripts})"
        )
        cameras = [""]
        for item in kwarg(call, "parameters").elts:
            if isinstance(item, ast.Dict):
                for k, v in zip(item.keys, item.values):
                    name = ast.literal_eval(k)
                    assert name in params.SCHEMA, f"{path.name} sets undeclared parameter {name!r}"
                    if isinstance(v, (ast.Constant, ast.List)):
                        value = ast.literal_eval(v)
                        assert params.validate(name, value) is None, params.validate(name, value)
                        if name == "cameras":
                            cameras = value
        inputs = {f"{c}/image" if c else "image" for c in cameras}
        for pair in kwarg(call, "remappings").elts:
            src = ast.literal_eval(pair.elts[0])
            assert src in inputs, (
                f"{path.name} remaps {src!r}, the node subscribes {sorted(inputs)}"
            )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_arguments_have_descriptions(path):
    tree = ast.parse(path.read_text())
    decls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "DeclareLaunchArgument"
    ]
    assert decls
    for d in decls:
        desc = kwarg(d, "description")
        assert desc is not None and len(ast.literal_eval(desc)) > 10, (
            f"{path.name}: {ast.dump(d.args[0])} undocumented"
        )
    declared = {ast.literal_eval(d.args[0]) for d in decls}
    used = {
        ast.literal_eval(n.args[0])
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "LaunchConfiguration"
    }
    assert used <= declared, (
        f"{path.name}: LaunchConfiguration without DeclareLaunchArgument: {used - declared}"
    )
    if path.name == "panoptic.launch.py":
        assert {"image", "params_file", "backend", "namespace"} <= declared
    assert "dds_profile" in declared, (
        f"{path.name}: no dds_profile argument (Fast DDS profile for large frames)"
    )


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_defaults_name_installed_config_files(path):
    """Every default of the form os.path.join(share, "config", NAME) is a file in config/ that setup.py installs."""
    tree = ast.parse(path.read_text())
    names = [
        ast.literal_eval(n.args[2])
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and ast.unparse(n.func) == "os.path.join"
        and len(n.args) == 3
        and isinstance(n.args[1], ast.Constant)
        and n.args[1].value == "config"
    ]
    assert "panoptic.yaml" in names and "fastdds_large_frames.xml" in names, names
    for name in names:
        assert (ROOT / "config" / name).is_file(), (
            f"{path.name}: default config/{name} does not exist"
        )
        ext = name.rsplit(".", 1)[-1]
        assert f'glob("config/*.{ext}")' in (ROOT / "setup.py").read_text(), (
            f"setup.py does not install config/*.{ext}"
        )


def test_every_parameter_file_sets_only_declared_parameters():
    files = [p for p in (ROOT / "config").glob("*.yaml") if "ros__parameters" in p.read_text()]
    assert ROOT / "config" / "panoptic.yaml" in files
    for f in files:
        data = yaml.safe_load(f.read_text())
        for key, block in data.items():
            values = block["ros__parameters"]
            unknown = set(values) - set(params.SCHEMA)
            assert not unknown, f"{f.name} [{key}] sets undeclared parameters {unknown}"
            assert params.validate_all(values) == [], f.name


def test_rviz_config_shows_node_outputs():
    rviz = yaml.safe_load((ROOT / "config" / "panoptic.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = [d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"]
    assert len(topics) >= 3
    for t in topics:
        assert t.rsplit("/", 1)[-1] in OUTPUT_LEAVES, t
    assert {"overlay", "semantic"} <= {t.rsplit("/", 1)[-1] for t in topics}


def test_setup_installs_launch_and_config():
    text = (ROOT / "setup.py").read_text()
    assert re.search(r'glob\("launch/\*\.py"\)', text) and re.search(
        r'glob\("config/\*\.rviz"\)', text
    )
    assert re.search(r'glob\("config/\*\.xml"\)', text)  # the Fast DDS profile


def _launch_ros_available() -> bool:
    try:
        import launch  # noqa: F401  (a namespace package named after ./launch does not count)

        return (
            hasattr(launch, "LaunchDescription")
            and importlib.util.find_spec("launch_ros") is not None
        )
    except ImportError:
        return False


@pytest.mark.skipif(
    not _launch_ros_available(), reason="launch / launch_ros are not installed here"
)
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds(path):  # pragma: no cover - needs launch_ros
    import launch

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert isinstance(ld, launch.LaunchDescription)
    assert ld.get_launch_arguments()
