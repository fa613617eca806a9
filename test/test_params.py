"""ROS-free tests of the parameter schema and config/panoptic.yaml (the single source of defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from panoptic_ros.backends import BACKEND_NAMES
from panoptic_ros.ros import params

ROOT = Path(__file__).resolve().parents[1]


def test_yaml_is_keyed_under_wildcard_and_matches_schema():
    data = yaml.safe_load((ROOT / "config" / "panoptic.yaml").read_text())
    assert list(data) == ["/**"]
    values = data["/**"]["ros__parameters"]
    assert set(values) == set(params.SCHEMA)
    assert params.validate_all(values) == []


def test_defaults_come_from_yaml():
    d = params.defaults()
    assert d == params.read_params_file(ROOT / "config" / "panoptic.yaml")
    assert d["cameras"] == [""] and d["autostart"] is True and d["backend"] in BACKEND_NAMES


def test_every_spec_is_documented_and_typed():
    for spec in params.SCHEMA.values():
        assert spec.description and spec.type in {
            "string",
            "bool",
            "integer",
            "double",
            "string_array",
        }
        if spec.min is not None:
            assert (
                spec.type in ("integer", "double") and spec.max is not None and spec.min <= spec.max
            )


def test_read_only_split():
    ro = {n for n, s in params.SCHEMA.items() if s.read_only}
    assert {"model", "backend", "device", "precision", "cameras", "autostart"} <= ro
    assert not ro & {
        "center_threshold",
        "stuff_area_min",
        "min_instance_area",
        "publish_overlay",
        "publish_panoptic_rgb",
        "diagnostics_period",
    }


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("center_threshold", 1.5, "out of range; allowed range (0.0, 1.0]"),
        ("center_threshold", 0.0, "out of range; allowed range (0.0, 1.0]"),
        ("center_threshold", -0.1, "center_threshold"),
        ("center_threshold", float("nan"), "finite"),
        ("center_threshold", "0.3", "must be of type double"),
        ("stuff_area_min", -1, "out of range"),
        ("stuff_area_min", 3.0, "must be of type integer"),
        ("publish_overlay", 1, "must be of type bool"),
        ("backend", "cuda-magic", "one of auto, onnxruntime, torch, tensorrt"),
        ("input_transport", "theora", "one of auto, raw, compressed"),
        ("cameras", [], "at least one camera"),
        ("cameras", ["a", "a"], "duplicates"),
        ("cameras", ["", "b"], "single camera"),
        ("cameras", ["/abs"], "relative topic prefix"),
        ("cameras", ["bad name"], "relative topic prefix"),
        ("nonexistent", 1, "unknown parameter"),
    ],
)
def test_validate_rejects_with_reason(name, value, fragment):
    reason = params.validate(name, value)
    assert reason is not None and fragment in reason and name in reason


@pytest.mark.parametrize(
    "name,value",
    [
        ("center_threshold", 0.001),
        ("center_threshold", 1.0),
        ("stuff_area_min", 0),
        ("cameras", [""]),
        ("cameras", ["front", "rear/left"]),
        ("backend", "torch"),
        ("autostart", False),
    ],
)
def test_validate_accepts(name, value):
    assert params.validate(name, value) is None


def test_docs_list_every_parameter():
    doc = (ROOT / "docs" / "node.md").read_text()
    for name, spec in params.SCHEMA.items():
        assert f"| `{name}` | {spec.type} |" in doc, f"docs/node.md does not document {name}"


def test_yaml_mismatch_is_reported(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("/**:\n  ros__parameters:\n    model: default\n    bogus: 1\n")
    with pytest.raises(params.ParamsError, match="unknown \\['bogus'\\]"):
        params.defaults(p)
    p.write_text("just a string")
    with pytest.raises(params.ParamsError, match="mapping"):
        params.read_params_file(p)


def test_params_file_as_launch_ros_writes_it_reads_like_rcl(tmp_path):
    """launch_ros dumps list parameters as !!python/tuple; rcl reads them as lists, and so does
    read_params_file (process_bag --params-file). No tagged Python object is ever built."""
    p = tmp_path / "launch_params_abc"
    p.write_text(
        "/**:\n  ros__parameters:\n    cameras: !!python/tuple\n    - front\n    - rear\n"
        "    threads: !!python/object/apply:os.getpid []\n"
    )
    assert params.read_params_file(p) == {"cameras": ["front", "rear"], "threads": []}


def test_rcl_init_errors_become_one_line_naming_the_file():
    text = (
        "failed to initialize rcl: Couldn't parse params file: '--params-file /tmp/p.yaml'. "
        "Error: Cannot have a value before ros__parameters at line 2, at "
        "/project/src/parse.c:812, at /project/src/rcl/arguments.c:415"
    )
    assert params.describe_rcl_init_error(text) == (
        "cannot read parameter file /tmp/p.yaml: Cannot have a value before ros__parameters at line 2"
    )
    assert params.describe_rcl_init_error("failed to initialize rcl: bad\n  remap rule") == (
        "failed to initialize rcl: bad remap rule"
    )


def test_shipped_config_files_resolve_from_the_source_tree_and_missing_ones_name_where_they_were_sought():
    from panoptic_ros.core import package_files, taxonomy
    from panoptic_ros.ros import dds_profile

    assert params.default_config_path() == ROOT / "config" / "panoptic.yaml"
    assert taxonomy.default_classes_path() == ROOT / "config" / "classes.yaml"
    assert dds_profile.shipped_profile() == ROOT / "config" / "fastdds_large_frames.xml"
    with pytest.raises(
        FileNotFoundError,
        match=r"config/no_such\.yaml not found \(looked in .*config/no_such\.yaml",
    ):
        package_files.config_file("no_such.yaml")


def test_docs_parameter_table_matches_schema_and_yaml():
    """Every row of docs/node.md's parameter table says what the node declares: the type, the
    default config/panoptic.yaml gives, read-only or run time, the constraint and the description
    (ros/params.py); and the table lists no parameter the node does not declare."""
    doc = (ROOT / "docs" / "node.md").read_text()
    defaults = params.defaults()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[2].startswith("`"):
            if cells[3] in ("read-only", "run time"):
                rows[cells[0].strip("`")] = cells
    assert set(rows) == set(params.SCHEMA), set(rows) ^ set(params.SCHEMA)
    for name, (_, typ, default, mode, constraint, description) in rows.items():
        spec = params.SCHEMA[name]
        assert typ == spec.type, name
        assert yaml.safe_load(default.strip("`")) == defaults[name], (name, default)
        assert mode == ("read-only" if spec.read_only else "run time"), name
        assert constraint == spec.constraints, (name, constraint, spec.constraints)
        assert description == spec.description.replace("|", "\\|"), name


def test_readme_parameter_lists_match_the_schema():
    """README's read-only / run-time lists name every declared parameter, each in its place."""
    import re

    text = (ROOT / "README.md").read_text()
    ro_part = text.split("- read-only (fixed at start):", 1)[1].split("- run time", 1)
    rt_part = ro_part[1].split("\n\n", 1)[0]
    named = {
        "read-only": set(re.findall(r"`([a-z_]+)`", ro_part[0])) & set(params.SCHEMA),
        "run time": set(re.findall(r"`([a-z_]+)`", rt_part)) & set(params.SCHEMA),
    }
    want = {
        "read-only": {n for n, s in params.SCHEMA.items() if s.read_only},
        "run time": {n for n, s in params.SCHEMA.items() if not s.read_only},
    }
    assert named == want
