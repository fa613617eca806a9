"""The node's parameter schema, free of ROS: names, types, descriptions, ranges, read-only flags.

Defaults come from ``config/panoptic.yaml`` (the single source of truth; keys under
``/**: ros__parameters``). ``node.py`` turns each :class:`ParamSpec` into a
``ParameterDescriptor``; tests check launch files and configs against :data:`SCHEMA`.
``validate()`` returns ``None`` for a good value or a reason string that names the parameter
and what is allowed, the same text the node returns from ``set_parameters``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from panoptic_ros.backends import BACKEND_NAMES
from panoptic_ros.core.package_files import config_file
from panoptic_ros.core.taxonomy import describe_yaml_error
from panoptic_ros.core.tracking import ASSIGNMENTS, SIMILARITIES, TrackerConfig

#: parameter type names (match rclpy Parameter.Type names, lower case)
STRING, BOOL, INTEGER, DOUBLE, STRING_ARRAY = "string", "bool", "integer", "double", "string_array"

INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    description: str
    read_only: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    min_exclusive: bool = False  # (min, max] instead of [min, max]

    @property
    def constraints(self) -> str:
        """Human-readable allowed values, e.g. '[0.0, 1.0]' or 'one of raw, compressed'."""
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.min is not None or self.max is not None:
            parts.append(f"range {'(' if self.min_exclusive else '['}{self.min}, {self.max}]")
        return "; ".join(parts)


_SPECS: tuple[ParamSpec, ...] = (
    # model (read-only: loaded on configure)
    ParamSpec(
        "model",
        STRING,
        "Model directory (weights + metadata.json), 'default', or an .onnx file.",
        True,
    ),
    ParamSpec(
        "backend",
        STRING,
        "Inference backend; auto picks tensorrt > torch-cuda > onnxruntime.",
        True,
        choices=tuple(BACKEND_NAMES),
    ),
    ParamSpec(
        "device", STRING, "Inference device, e.g. cpu or cuda:0; empty = backend default.", True
    ),
    ParamSpec(
        "precision",
        STRING,
        "Inference precision: fp16 on GPU backends; int8 runs the model's QDQ graph (onnxruntime, tensorrt).",
        True,
        choices=("fp32", "fp16", "int8"),
    ),
    ParamSpec("threads", INTEGER, "CPU inference threads; 0 = runtime default.", True, 0, 256),
    ParamSpec("max_batch", INTEGER, "Frames per inference call; 0 = one per camera.", True, 0, 64),
    # inputs (read-only)
    ParamSpec(
        "cameras",
        STRING_ARRAY,
        "Camera names. [''] = one camera: subscribe 'image', publish in the node namespace; "
        "['a','b'] = subscribe 'a/image', 'b/image', publish under 'a/', 'b/'.",
        True,
    ),
    ParamSpec(
        "input_transport",
        STRING,
        "Input message type: raw = sensor_msgs/Image, compressed = sensor_msgs/CompressedImage, "
        "auto = compressed when the resolved input topic ends in /compressed.",
        True,
        choices=("auto", "raw", "compressed"),
    ),
    ParamSpec(
        "input_qos",
        STRING,
        "Input QoS (depth 1): auto = what the topic's publishers offer (reliable when every "
        "publisher is reliable, else best effort; re-decided when publishers come and go), "
        "sensor_data = best effort, reliable = reliable.",
        True,
        choices=("auto", "sensor_data", "reliable"),
    ),
    ParamSpec(
        "max_image_pixels",
        INTEGER,
        "Frames with more pixels (H*W) are rejected as bad frames.",
        True,
        1,
        INT_MAX,
    ),
    # post-processing (run time)
    ParamSpec(
        "center_threshold",
        DOUBLE,
        "Instance centre score threshold.",
        False,
        0.0,
        1.0,
        min_exclusive=True,
    ),
    ParamSpec(
        "stuff_area_min",
        INTEGER,
        "Stuff segments smaller than this many pixels become unlabeled.",
        False,
        0,
        INT_MAX,
    ),
    ParamSpec(
        "min_instance_area",
        INTEGER,
        "Thing instances smaller than this many pixels are dropped.",
        False,
        0,
        INT_MAX,
    ),
    # outputs (run time)
    ParamSpec(
        "publish_panoptic_rgb",
        BOOL,
        "Publish 'panoptic_rgb' (COCO id = R + 256 G + 256^2 B).",
        False,
    ),
    ParamSpec(
        "publish_overlay",
        BOOL,
        "Publish 'overlay' (computed only while it has subscribers).",
        False,
    ),
    ParamSpec(
        "overlay_alpha",
        DOUBLE,
        "Opacity of the class colours in 'overlay' (0 = camera image only).",
        False,
        0.0,
        1.0,
    ),
    ParamSpec(
        "diagnostics_period", DOUBLE, "Seconds between /diagnostics messages.", False, 0.1, 60.0
    ),
    ParamSpec(
        "bad_frame_log_period",
        DOUBLE,
        "Seconds between log lines for one fault on one camera.",
        False,
        0.0,
        3600.0,
    ),
    # tracking (run time; core/tracking.py)
    ParamSpec(
        "tracking",
        BOOL,
        "Give thing instances track ids that persist across frames (Detection2D.id, instance "
        "image); false = per-frame ids 1..N. Changing it resets the trackers.",
        False,
    ),
    ParamSpec(
        "tracking_max_age",
        INTEGER,
        "Processed frames (not time) a track may go undetected and still keep its id when its "
        "object is seen again.",
        False,
        0,
        100000,
    ),
    ParamSpec(
        "tracking_min_iou",
        DOUBLE,
        "Least IoU (mask or box, after motion prediction) for a detection to continue a track.",
        False,
        0.0,
        1.0,
        min_exclusive=True,
    ),
    ParamSpec(
        "tracking_similarity",
        STRING,
        "Track-detection similarity: mask = IoU of the motion-shifted masks, box = bbox IoU.",
        False,
        choices=SIMILARITIES,
    ),
    ParamSpec(
        "tracking_assignment",
        STRING,
        "Matching: greedy (best pairs first) or hungarian (optimal; needs scipy).",
        False,
        choices=ASSIGNMENTS,
    ),
    ParamSpec(
        "tracking_motion",
        BOOL,
        "Predict each track with a constant-velocity model over the stamp time since it was last "
        "seen (false: where it was last seen).",
        False,
    ),
    # node (read-only)
    ParamSpec(
        "stats_window", INTEGER, "Frames in the rate / latency window (mean, p99).", True, 2, 100000
    ),
    ParamSpec(
        "autostart",
        BOOL,
        "Configure and activate on start; false = wait for a lifecycle manager.",
        True,
    ),
)

SCHEMA: dict[str, ParamSpec] = {s.name: s for s in _SPECS}

#: parameters that map onto Segmenter.update_config(...)
SEGMENTER_PARAMS = ("center_threshold", "stuff_area_min", "min_instance_area")

#: parameter -> core.tracking.TrackerConfig field (all run time; see tracker_config)
TRACKING_PARAMS = {
    "tracking": "enabled",
    "tracking_max_age": "max_age",
    "tracking_min_iou": "min_iou",
    "tracking_similarity": "similarity",
    "tracking_assignment": "assignment",
    "tracking_motion": "motion",
}


def tracker_config(values: Mapping[str, Any]) -> TrackerConfig:
    """The TrackerConfig of the node parameters ``values`` (the node, process-bag, eval and bench
    build their trackers with this, so the same parameters give the same ids). Raises ValueError with
    the reason, named by parameter, when the combination is unusable (hungarian without scipy)."""
    kw = {field: values[name] for name, field in TRACKING_PARAMS.items() if name in values}
    try:
        return TrackerConfig(**kw)
    except ValueError as exc:
        names = {v: k for k, v in TRACKING_PARAMS.items()}
        text = str(exc)
        for field, name in names.items():
            text = text.replace(f"{field} must", f"parameter '{name}' must")
        raise ValueError(text) from None


def take_tracking_params(params: dict[str, Any], base: Mapping[str, Any]) -> TrackerConfig:
    """The TrackerConfig of ``base`` (node parameter values) changed by the ``tracking*`` names
    of ``params`` (a command's ``--param NAME=VALUE``s), which are removed from ``params``: the
    rest are the model's. ValueError with the reason when a value is not allowed."""
    values = dict(base)
    for name in [n for n in params if n in TRACKING_PARAMS]:
        reason = validate(name, params[name])
        if reason:
            raise ValueError(reason)
        values[name] = params.pop(name)
    return tracker_config(values)


class ParamsError(ValueError):
    """The parameter file is unusable or does not match the schema."""


def default_config_path() -> Path:
    """config/panoptic.yaml from the source tree or the installed share directory."""
    try:
        return config_file("panoptic.yaml")
    except FileNotFoundError as exc:
        raise ParamsError(str(exc)) from None


class _RclLikeSafeLoader(yaml.SafeLoader):
    """SafeLoader that reads a tagged node as its plain value, as rcl's parser does: launch_ros
    writes list parameters as ``!!python/tuple [a, b]`` (yaml.dump of a tuple), which rcl reads
    as a list and ``yaml.safe_load`` rejects. No Python object is ever constructed."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    return loader.construct_object(yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark))


_RclLikeSafeLoader.add_multi_constructor("", _untagged)


def load_params_yaml(path: str | Path) -> dict[str, Any]:
    """The parsed YAML mapping of a params file; ParamsError naming the file and fault when it is
    missing, unreadable, not UTF-8, not YAML or not a mapping (no schema checks)."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_RclLikeSafeLoader)
    except UnicodeDecodeError as exc:
        raise ParamsError(
            f"cannot read parameter file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ParamsError(f"cannot read parameter file {path}: {describe_yaml_error(exc)}") from exc
    if not isinstance(data, dict):
        raise ParamsError(
            f"parameter file {path}: expected a mapping of node names, got {type(data).__name__}"
        )
    return data


_RCL_PARAMS_FILE_ERROR = re.compile(
    r"Couldn't parse params file: '--params-file (?P<path>.*?)'\. Error: (?P<why>.*)"
)


def describe_rcl_init_error(text: str) -> str:
    """One line for an ``rclpy.init`` failure (RCLError text): a params file rcl cannot read
    becomes ``cannot read parameter file PATH: WHY``, without rcl's C source locations.

    The node leaves reading ``--params-file`` to rcl (so it accepts every file rcl accepts, e.g.
    the ``!!python/tuple`` lists launch_ros writes) and reports rcl's verdict in this form.
    """
    text = re.sub(r",? at [^ ,]+\.c:\d+", "", " ".join(text.split()))
    m = _RCL_PARAMS_FILE_ERROR.search(text)
    if m:
        return f"cannot read parameter file {m['path']}: {m['why'].strip().rstrip('.')}"
    return text[:400]


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The ``ros__parameters`` of a params file, merged over every node key (``/**`` first)."""
    data = load_params_yaml(path)
    merged: dict[str, Any] = {}
    for key in sorted(data, key=lambda k: k != "/**"):
        block = data[key]
        if not isinstance(block, dict) or not isinstance(block.get("ros__parameters"), dict):
            raise ParamsError(f"parameter file {path}: '{key}' has no 'ros__parameters' mapping")
        merged.update(block["ros__parameters"])
    return merged


_DEFAULTS: dict[str, Any] | None = None


def defaults(path: str | Path | None = None) -> dict[str, Any]:
    """Defaults for every schema parameter, read from config/panoptic.yaml and validated."""
    global _DEFAULTS
    if path is None and _DEFAULTS is not None:
        return dict(_DEFAULTS)
    values = read_params_file(path or default_config_path())
    missing = sorted(set(SCHEMA) - set(values))
    unknown = sorted(set(values) - set(SCHEMA))
    if missing or unknown:
        raise ParamsError(
            f"panoptic.yaml does not match the schema: missing {missing}, unknown {unknown}"
        )
    for name, value in values.items():
        reason = validate(name, value)
        if reason:
            raise ParamsError(f"panoptic.yaml default: {reason}")
    if path is None:
        _DEFAULTS = dict(values)
    return dict(values)


def type_matches(spec: ParamSpec, value: Any) -> bool:
    if spec.type == BOOL:
        return isinstance(value, bool)
    if spec.type == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.type == DOUBLE:
        return isinstance(value, float)
    if spec.type == STRING:
        return isinstance(value, str)
    if spec.type == STRING_ARRAY:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return False


def family_param_specs(specs: Any) -> dict[str, ParamSpec]:
    """A model family's thresholds (families.base.ParamSpec: name, default, low, high,
    description) as run-time node parameters: DOUBLE or INTEGER by the default's type, with their
    range. The node declares them on configure, once it knows the family."""
    out = {}
    for f in specs:
        kind = INTEGER if isinstance(f.default, int) and not isinstance(f.default, bool) else DOUBLE
        lo, hi = (int(f.low), int(f.high)) if kind == INTEGER else (float(f.low), float(f.high))
        out[f.name] = ParamSpec(f.name, kind, f.description, False, lo, hi)
    return out


def validate(name: str, value: Any, extra: Mapping[str, ParamSpec] | None = None) -> str | None:
    """None when ``value`` is acceptable for parameter ``name``, else a reason naming both.
    ``extra``: parameters declared beyond SCHEMA (the model family's thresholds)."""
    spec = SCHEMA.get(name) or (extra or {}).get(name)
    if spec is None:
        known = sorted(set(SCHEMA) | set(extra or {}))
        return f"unknown parameter '{name}' (known: {', '.join(known)})"
    if not type_matches(spec, value):
        return (
            f"parameter '{name}' must be of type {spec.type}, got {type(value).__name__} {value!r}"
        )
    if spec.type in (INTEGER, DOUBLE):
        if isinstance(value, float) and not math.isfinite(value):
            return f"parameter '{name}' must be finite, got {value}; allowed {spec.constraints}"
        if spec.min_exclusive and value <= spec.min:
            return f"parameter '{name}' = {value} is out of range; allowed {spec.constraints}"
        if (spec.min is not None and value < spec.min) or (
            spec.max is not None and value > spec.max
        ):
            return f"parameter '{name}' = {value} is out of range; allowed {spec.constraints}"
    if spec.choices and value not in spec.choices:
        return f"parameter '{name}' = {value!r} is not allowed; {spec.constraints}"
    if name == "cameras":
        return _validate_cameras(list(value))
    if name in TRACKING_PARAMS:
        try:
            tracker_config({name: value})
        except ValueError as exc:  # e.g. hungarian without scipy
            return str(exc)
    return None


def _validate_cameras(cams: list[str]) -> str | None:
    if not cams:
        return "parameter 'cameras' must name at least one camera ([''] for a single camera)"
    if len(set(cams)) != len(cams):
        return f"parameter 'cameras' has duplicates: {cams}"
    if "" in cams and len(cams) > 1:
        return "parameter 'cameras': '' (no prefix) only works as the single camera"
    for c in cams:
        bad = (
            c.startswith("/")
            or c.endswith("/")
            or "//" in c
            or any(not (ch.isalnum() or ch in "_/") for ch in c)
            or (c and c[0].isdigit())
        )
        if bad:
            return (
                f"parameter 'cameras': {c!r} is not a relative topic prefix "
                "(letters, digits, '_' and inner '/', not starting with a digit)"
            )
    return None


def validate_all(
    values: Mapping[str, Any], extra: Mapping[str, ParamSpec] | None = None
) -> list[str]:
    """Reasons for every bad value in ``values`` (empty list: all good)."""
    return [r for r in (validate(k, v, extra) for k, v in values.items()) if r]
