"""The one way to build a Segmenter: used by the node and every command (process-bag, bench, eval).

    seg = build_segmenter(model, backend, batch=1, config=PostprocessConfig(...), params={...})

Steps: resolve ``model`` (families/model_card.py) -> recognise the family (registry.py) -> check
the taxonomy against the classes the graph predicts -> create and open the backend on the graph
(this project's weight directories: exported to the ONNX cache, or run by the torch backend) ->
Segmenter(family, backend, config) with the family's thresholds set from ``params``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from panoptic_ros.core.pipeline import Segmenter
from panoptic_ros.core.postprocess import PostprocessConfig
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.taxonomy_sources import FORMATS
from panoptic_ros.families.base import ModelFamily
from panoptic_ros.families.model_card import ModelSource, resolve_model
from panoptic_ros.families.model_store import ModelError
from panoptic_ros.families.registry import recognise

#: classes of the default taxonomy (config/classes.yaml), the only count run without a taxonomy
DEFAULT_CLASSES = 8


def describe(source: ModelSource) -> str:
    return str(source.onnx_path or source.where)


def make_family(source: ModelSource) -> ModelFamily:
    """The recognised family for ``source``, with its taxonomy checked (ModelError otherwise)."""
    where = describe(source)
    cls = recognise(source.signature, source.card, where)
    n = cls.num_classes(source.signature, source.card)
    tax = source.taxonomy
    if tax is None:
        if n not in (None, DEFAULT_CLASSES):
            raise ModelError(
                f"{where}: the graph predicts {n} classes but no taxonomy was found (looked for "
                f"{', '.join(source.looked_for)}); the default taxonomy has {DEFAULT_CLASSES}. "
                f"Give a class list ({FORMATS})"
            )
        tax = Taxonomy.default()
    elif n is not None and tax.num_classes != n:
        raise ModelError(
            f"{where}: the graph predicts {n} classes but the taxonomy in {source.taxonomy_source} "
            f"has {tax.num_classes}; see docs/models.md"
        )
    if cls.ALL_THINGS and tax.stuff_ids:
        tax = Taxonomy(
            tuple(dataclasses.replace(c, is_thing=True) for c in tax.classes), tax.label_divisor
        )
    try:
        return cls(tax, source.signature, source.card, source.onnx_path or source.where)
    except ModelError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # a bad card value, a bad threshold
        raise ModelError(f"{where}: {cls.name}: {exc}") from exc


def _static_batch(source: ModelSource) -> int | None:
    if source.onnx_path is None or not source.signature.inputs:
        return None
    first = max(source.signature.inputs, key=lambda t: len(t.shape))
    b = first.shape[0] if first.shape else None
    return b if isinstance(b, int) and b > 0 else None


def build_segmenter(
    model: str | Path = "default",
    backend: str = "onnxruntime",
    *,
    batch: int = 1,
    config: PostprocessConfig | None = None,
    params: dict[str, Any] | None = None,
    **backend_options: Any,
) -> Segmenter:
    """Load ``model`` on ``backend`` and return an opened Segmenter (module docstring).

    params: family thresholds and PostprocessConfig fields by name (``Segmenter.update_config``);
    ModelError / BackendError / ValueError name the model and the fault.
    """
    from panoptic_ros.backends import BackendError, create_backend

    source = resolve_model(model)
    family = make_family(source)
    if source.info is not None:
        target: Any = source.info
    else:
        if backend == "torch":
            raise BackendError(
                f"torch backend runs this project's model directories (weights.safetensors) only; "
                f"{describe(source)} is a {family.name} ONNX graph: use onnxruntime or tensorrt"
            )
        b = _static_batch(source)
        if b is not None and b != batch:
            raise ModelError(
                f"{describe(source)}: ONNX has a static batch of {b}, {batch} requested"
            )
        target = family.runnable_onnx(source.onnx_path)
    be = create_backend(backend, target, batch=batch, **backend_options)
    be.open()
    seg = Segmenter(family, be, config)
    try:
        changes: dict[str, Any] = {}
        if config is not None:
            changes.update(
                {
                    p.name: getattr(config, p.name)
                    for p in family.PARAMETERS
                    if hasattr(config, p.name)
                }
            )
        changes.update(params or {})
        if changes:
            seg.update_config(**changes)
    except Exception:
        seg.close()
        raise
    return seg


def segmenter_from_settings(
    cfg: dict[str, Any], batch: int = 1, params: dict[str, Any] | None = None
) -> Segmenter:
    """The Segmenter the node builds from its parameters (model, backend, device, precision,
    threads and every threshold it knows); process-bag uses it so both agree. ``params``: explicit
    thresholds applied last (an unknown name is an error)."""
    options: dict[str, Any] = {}
    if cfg.get("device"):
        options["device"] = cfg["device"]
    if cfg.get("precision", "fp32") != "fp32":
        options["precision"] = cfg["precision"]
    if cfg.get("threads"):
        options["threads"] = cfg["threads"]
    seg = build_segmenter(cfg["model"], cfg["backend"], batch=batch, **options)
    try:
        known = set(seg.parameter_names)
        values = {k: v for k, v in cfg.items() if k in known}
        values.update(params or {})
        if values:
            seg.update_config(**values)
    except Exception:
        seg.close()
        raise
    return seg
