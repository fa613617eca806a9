"""Class lists in the formats models ship them in -> ``Taxonomy``; is_thing from shipped presets.

Accepted (``parse_taxonomy``; docs/models.md "Taxonomy"):

* this project's ``{label_divisor, classes: [{id, name, is_thing, color}]}`` (classes.yaml,
  ``metadata.json`` under ``taxonomy``); ``is_thing`` / ``color`` may be left out;
* Hugging Face ``config.json``: ``id2label`` ({"0": "person", ...});
* Ultralytics: ``names`` as a list or an {id: name} dict (data YAML, or the ``names``
  metadata_prop of an exported ONNX, which is the dict's Python repr);
  in these two a repeated name gets its index appended (``unique_names``);
* COCO ``categories`` ([{id, name, isthing, color}], e.g. panoptic_coco_categories.json); the
  categories' order is the model's class order (COCO ids are not contiguous);
* a bare list of names, or an {id: name} mapping.

is_thing comes from the source where it says (our ``is_thing``, COCO ``isthing``); otherwise from
the shipped presets in config/taxonomies/ (COCO panoptic 133, Cityscapes 19, ADE20K 150), matched
by class name (case-insensitive, with the presets' aliases); a name in no preset is a thing
(``default_thing``), which is what every Ultralytics class is. Colours likewise, else a fixed palette.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from panoptic_ros.core.package_files import find
from panoptic_ros.core.taxonomy import (
    DEFAULT_LABEL_DIVISOR,
    ClassInfo,
    Taxonomy,
    TaxonomyError,
    describe_yaml_error,
)

#: shipped presets (config/taxonomies/<file>), consulted in this order for is_thing by name
PRESETS = ("coco_panoptic.yaml", "cityscapes.yaml", "ade20k.yaml")

FORMATS = (
    "expected one of: {classes: [{id, name, is_thing, color}]} (classes.yaml / metadata.json), "
    "{names: [...] or {id: name}} (Ultralytics), {categories: [{id, name, isthing}]} (COCO), "
    '{id2label: {"0": name}} (Hugging Face config.json), or a list of names; see docs/models.md'
)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name).strip().lower())


@lru_cache(maxsize=8)
def load_preset(filename: str) -> tuple[Taxonomy, dict[str, int]]:
    """A shipped preset and its name index (normalised name or alias -> class id)."""
    path = find(f"config/taxonomies/{filename}")
    data = yaml.safe_load(path.read_text())
    tax = Taxonomy.from_dict(data)
    index: dict[str, int] = {}
    for c in data["classes"]:
        for n in [c["name"], *c.get("aliases", [])]:
            index.setdefault(_norm(n), int(c["id"]))
    return tax, index


def _palette(i: int) -> tuple[int, int, int]:
    """A fixed, well-spread colour for class ``i`` (golden-ratio hue walk)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def best_preset(names: Sequence[str]) -> tuple[str, Taxonomy, dict[str, int]] | None:
    """The preset matching most of ``names`` (None when no name matches any preset)."""
    best, best_n = None, 0
    for f in PRESETS:
        try:
            tax, index = load_preset(f)
        except (FileNotFoundError, OSError, TaxonomyError):
            continue
        n = sum(1 for x in names if _norm(x) in index)
        if n > best_n:
            best, best_n = (f, tax, index), n
    return best


def build_taxonomy(
    names: Sequence[str],
    is_thing: Sequence[bool | None] | None = None,
    colors: Sequence[Sequence[int] | None] | None = None,
    *,
    label_divisor: int = DEFAULT_LABEL_DIVISOR,
    default_thing: bool = True,
) -> Taxonomy:
    """Names in class order (+ optional per-class is_thing / colour) -> Taxonomy, the gaps filled
    from the best-matching preset by name (else ``default_thing`` and the palette)."""
    names = [str(n) for n in names]
    preset = best_preset(names)
    classes = []
    for i, name in enumerate(names):
        thing = is_thing[i] if is_thing is not None else None
        color = colors[i] if colors is not None else None
        pid = preset[2].get(_norm(name)) if preset else None
        if pid is not None:
            pc = preset[1].classes[pid]
            thing = pc.is_thing if thing is None else thing
            color = pc.color if color is None else color
        classes.append(
            ClassInfo(
                i,
                name,
                default_thing if thing is None else bool(thing),
                tuple(int(v) for v in (color if color is not None else _palette(i))),
            )
        )
    return Taxonomy(tuple(classes), label_divisor)


def _names_from_mapping(m: Mapping[Any, Any], what: str) -> list[str]:
    try:
        items = sorted((int(k), str(v)) for k, v in m.items())
    except (TypeError, ValueError) as exc:
        raise TaxonomyError(f"{what}: keys must be integer class ids ({exc})") from exc
    ids = [k for k, _ in items]
    if ids != list(range(len(ids))):
        raise TaxonomyError(f"{what}: class ids must be 0..{len(ids) - 1} without gaps, got {ids}")
    return [v for _, v in items]


def unique_names(names: Sequence[str]) -> list[str]:
    """Repeats renamed with their index appended ("car", "car_7"); an empty name too ("_3").

    Why: Ultralytics ``names`` and HF ``id2label`` allow repeats (e.g. a duplicated "LABEL_x"),
    a Taxonomy does not; the class order (what the model predicts) must stay as it is."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        name = name if name and name not in seen else f"{name}_{i}"
        seen.add(name)
        out.append(name)
    return out


def parse_names(names: Any, where: str = "names") -> list[str]:
    """Ultralytics ``names``: the metadata_prop string, an {id: name} dict or a list -> class
    names in class order, repeats made unique; TaxonomyError naming ``where`` otherwise."""
    if isinstance(names, str):
        out = parse_names_repr(names)
    elif isinstance(names, Mapping):
        out = _names_from_mapping(names, where)
    elif isinstance(names, (list, tuple)):
        out = [str(n) for n in names]
    else:
        raise TaxonomyError(
            f"{where}: expected a dict or list of names, got {type(names).__name__}"
        )
    if not out:
        raise TaxonomyError(f"{where}: empty")
    return unique_names(out)


def parse_names_repr(text: str) -> list[str]:
    """Ultralytics' ``names`` metadata_prop (``"{0: 'person', 1: 'bicycle'}"``) -> names,
    read with ``ast.literal_eval`` (never ``eval``)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise TaxonomyError(f"ONNX metadata 'names' is not a dict literal: {exc}") from exc
    if isinstance(value, Mapping):
        return _names_from_mapping(value, "ONNX metadata 'names'")
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise TaxonomyError("ONNX metadata 'names' must be a dict or list of class names")


def parse_taxonomy(data: Any, where: str = "taxonomy") -> Taxonomy:
    """Any accepted format (module docstring) -> Taxonomy; TaxonomyError naming ``where`` and the
    expected formats otherwise."""
    try:
        return _parse(data, where)
    except TaxonomyError as exc:
        msg = str(exc)
        raise TaxonomyError(msg if where in msg else f"{where}: {msg}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TaxonomyError(f"{where}: malformed taxonomy ({exc!r}); {FORMATS}") from exc


def _parse(data: Any, where: str) -> Taxonomy:
    if isinstance(data, Mapping) and isinstance(data.get("taxonomy"), (Mapping, list)):
        data = data["taxonomy"]  # our metadata.json
    if isinstance(data, (list, tuple)):
        if all(isinstance(x, str) for x in data):
            return build_taxonomy(data)
        if all(isinstance(x, Mapping) for x in data):
            return _parse({"categories": data}, where)
    if not isinstance(data, Mapping):
        raise TaxonomyError(f"{where}: not a class list ({type(data).__name__}); {FORMATS}")
    divisor = int(data.get("label_divisor", DEFAULT_LABEL_DIVISOR))
    if "classes" in data:
        cl = sorted(data["classes"], key=lambda c: int(c["id"]))
        ids = [int(c["id"]) for c in cl]
        if ids != list(range(len(ids))):
            raise TaxonomyError(
                f"{where}: class ids must be 0..{len(ids) - 1} without gaps, got {ids}"
            )
        return build_taxonomy(
            [c["name"] for c in cl],
            [c.get("is_thing") for c in cl],
            [c.get("color") for c in cl],
            label_divisor=divisor,
        )
    if "id2label" in data:
        names = unique_names(_names_from_mapping(data["id2label"], f"{where}: id2label"))
        return build_taxonomy(names, label_divisor=divisor)
    if "names" in data:
        return build_taxonomy(parse_names(data["names"], f"{where}: names"), label_divisor=divisor)
    if "categories" in data:
        cats = list(data["categories"])
        isthing = [None if c.get("isthing") is None else bool(c["isthing"]) for c in cats]
        return build_taxonomy(
            [c["name"] for c in cats],
            isthing,
            [c.get("color") for c in cats],
            label_divisor=divisor,
        )
    if data and all(re.fullmatch(r"\d+", str(k)) for k in data):
        return build_taxonomy(_names_from_mapping(data, where), label_divisor=divisor)
    raise TaxonomyError(f"{where}: no class list found (keys {sorted(map(str, data))}); {FORMATS}")


def load_taxonomy_file(path: str | Path) -> Taxonomy:
    """A taxonomy file in any accepted format (.json, or YAML otherwise)."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise TaxonomyError(f"cannot read taxonomy {path}: {describe_yaml_error(exc)}") from exc
    return parse_taxonomy(data, str(path))
