"""``--param NAME=VALUE`` (repeatable): a threshold for the commands that run a model.

Any name ``Segmenter.update_config`` accepts: the shared post-processing fields
(center_threshold, stuff_area_min, min_instance_area) and the model family's own thresholds
(docs/models.md lists them per family, e.g. nms_kernel / top_k of Panoptic-DeepLab). Values are
parsed as YAML scalars (0.5 -> float, 7 -> int), the same as ``-p name:=value`` for the node.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def add_param_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a model threshold, e.g. --param center_threshold=0.3 --param nms_kernel=11 "
        "(repeatable; the family's names are in docs/models.md)",
    )


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """['a=1', 'b=0.5'] -> {'a': 1, 'b': 0.5}; ValueError naming a malformed item."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--param {item!r}: value is not a number or string ({exc})") from exc
    return out
