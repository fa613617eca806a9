"""Which family runs a graph: recognised from the ONNX signature, its metadata and the model card.

Families are registered by module and class name and imported on first use, so a family whose
module (or library) is absent is skipped with its reason instead of breaking the others. Order
matters only when several match: the most specific contracts come first. A card's ``family``
picks one family by name (registry key or the class's ``name``) and skips recognition.

When nothing matches, ``recognise`` raises one ModelError listing every violation of every
family, so a user sees at once how far the graph is from each contract (docs/models.md).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from panoptic_ros.families.base import ModelFamily, OnnxSignature
from panoptic_ros.families.model_store import ModelError

#: registry key -> (module, class), in recognition order
FAMILIES: dict[str, tuple[str, str]] = {
    "ours": ("panoptic_ros.families.ours", "OursFamily"),
    "yolo_seg": ("panoptic_ros.families.yolo_seg", "YoloSegFamily"),
    "mask_classification": (
        "panoptic_ros.families.mask_classification",
        "MaskClassificationFamily",
    ),
    "panoptic_deeplab": ("panoptic_ros.families.panoptic_deeplab", "PanopticDeepLabFamily"),
}


def load_families() -> tuple[dict[str, type[ModelFamily]], dict[str, str]]:
    """(key -> family class for every importable family, key -> why the others are missing)."""
    found: dict[str, type[ModelFamily]] = {}
    missing: dict[str, str] = {}
    for key, (module, cls) in FAMILIES.items():
        try:
            found[key] = getattr(importlib.import_module(module), cls)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the family exists but a library it needs does not
                missing[key] = f"needs the '{exc.name}' package"
            else:
                missing[key] = "not in this build"
        except (ImportError, AttributeError) as exc:
            missing[key] = f"cannot be loaded ({exc})"
    return found, missing


def family_by_name(name: str) -> type[ModelFamily]:
    found, missing = load_families()
    for key, cls in found.items():
        if name in (key, cls.name):
            return cls
    if name in missing:
        raise ModelError(f"model family {name!r} {missing[name]}")
    raise ModelError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")


def _violations(cls: type[ModelFamily], sig: OnnxSignature, card: Mapping[str, Any]) -> list[str]:
    try:
        return list(cls.violations(sig, card))
    except Exception as exc:  # a family's check must not hide the others' reasons
        return [f"check failed: {type(exc).__name__}: {exc}"]


#: each family's contract in one line, for the "no family recognises this graph" message
CONTRACTS: dict[str, str] = {
    "ours": "inputs image + center_threshold, outputs semantic, instance, center_score",
    "panoptic_deeplab": "outputs semantic_logits, center_heatmap, center_offset",
    "mask_classification": "input pixel_values, outputs class_queries_logits + "
    "masks_queries_logits (Mask2Former/MaskFormer) or logits + pred_masks (DETR-seg)",
    "yolo_seg": "input images, outputs output0 + output1, Ultralytics metadata task=segment",
}


def recognise(sig: OnnxSignature, card: Mapping[str, Any], where: str) -> type[ModelFamily]:
    """The family for this graph + card; ModelError listing every family's violations if none."""
    wanted = card.get("family")
    if wanted:
        cls = family_by_name(str(wanted))
        bad = _violations(cls, sig, card)
        if bad:
            raise ModelError(
                f"{where}: the model card names family {wanted!r} but the graph breaks its contract: "
                + "; ".join(bad)
                + "; see docs/models.md"
            )
        return cls
    found, missing = load_families()
    reasons: dict[str, list[str]] = {}
    for key, cls in found.items():
        try:
            ok = cls.matches(sig, card)
        except Exception:
            ok = False
        if ok:
            return cls
        reasons[key] = _violations(cls, sig, card) or ["not recognised"]
    # a graph with every name of one family's contract is meant for it: say only what is wrong
    near = [k for k, v in reasons.items() if not any("missing" in r for r in v)]
    if len(near) == 1:
        raise ModelError(
            f"{where}: looks like a {near[0]} graph, but "
            + "; ".join(reasons[near[0]])
            + "; see docs/models.md"
        )
    # The closest family (fewest violations) in full; the others as their contract in one line,
    # so the message names what is wrong without becoming a wall (the graph's own inputs and
    # outputs are in the header already, hence the "(has [...])" details are dropped).
    closest = min(reasons, key=lambda k: len(reasons[k]))
    shown = [re.sub(r" \(has \[[^\]]*\]\)", "", r) for r in reasons[closest]]
    others = [f"{k}: {CONTRACTS.get(k, 'see docs/models.md')}" for k in reasons if k != closest]
    by_why: dict[str, list[str]] = {}
    for key, why in missing.items():
        by_why.setdefault(why, []).append(key)
    others += [f"{', '.join(keys)}: {why}" for why, keys in by_why.items()]
    raise ModelError(
        f"{where}: no model family recognises this graph (inputs {sig.input_names}, outputs "
        f"{sig.output_names}). Closest, {closest}: "
        + "; ".join(shown)
        + ". Other families need: "
        + "; ".join(others)
        + ". See docs/models.md, or add a model card naming the family."
    )
