"""The class list (id, name, thing/stuff, colour) and the panoptic id encoding.

Loaded from YAML (config/classes.yaml) or from the model's metadata.json, so a swapped
model brings its own classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from panoptic_ros.core.package_files import config_file

DEFAULT_LABEL_DIVISOR = 1000


def describe_yaml_error(exc: Exception) -> str:
    """One line for a YAML (or other) parse error: 'line L, column C: problem (while ...)'.

    PyYAML's own text spans several lines with the offending source and a caret."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        context = getattr(exc, "context", None)
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (
            f" ({context})" if context else ""
        )
    return " ".join(str(exc).split())


class TaxonomyError(ValueError):
    """The class list is unusable (clashing ids, bad colours, unreadable file)."""


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    is_thing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Taxonomy:
    classes: tuple[ClassInfo, ...]
    label_divisor: int = DEFAULT_LABEL_DIVISOR

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if not ids:
            raise TaxonomyError("taxonomy has no classes")
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise TaxonomyError(f"taxonomy class ids clash: {dup}")
        if sorted(ids) != list(range(len(ids))):
            raise TaxonomyError(
                f"taxonomy ids must be 0..{len(ids) - 1} without gaps, got {sorted(ids)}"
            )
        if len(ids) > 65534:
            raise TaxonomyError(
                "more than 65534 classes cannot be encoded in a 16-bit semantic image"
            )
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise TaxonomyError(f"taxonomy class names clash: {names}")
        if self.label_divisor < 1:
            raise TaxonomyError(f"label_divisor must be >= 1, got {self.label_divisor}")
        for c in self.classes:
            if len(c.color) != 3 or not all(0 <= v <= 255 for v in c.color):
                raise TaxonomyError(
                    f"class {c.name!r}: colour must be three values 0..255, got {c.color}"
                )
        object.__setattr__(self, "classes", tuple(sorted(self.classes, key=lambda c: c.id)))

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Taxonomy:
        try:
            classes = tuple(
                ClassInfo(
                    int(c["id"]),
                    str(c["name"]),
                    bool(c["is_thing"]),
                    tuple(int(v) for v in c["color"]),
                )
                for c in data["classes"]
            )
            divisor = int(data.get("label_divisor", DEFAULT_LABEL_DIVISOR))
        except (KeyError, TypeError, ValueError) as exc:
            raise TaxonomyError(f"malformed taxonomy: {exc!r}") from exc
        return cls(classes, divisor)

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise TaxonomyError(f"cannot read taxonomy {path}: {describe_yaml_error(exc)}") from exc
        if isinstance(data, dict) and "taxonomy" in data:  # model metadata.json
            data = data["taxonomy"]
        if isinstance(data, dict) and "classes" in data:  # this project's format: strict
            try:
                return cls.from_dict(data)
            except TaxonomyError as exc:
                raise TaxonomyError(f"taxonomy {path}: {exc}") from None
        # names: / categories / id2label / a list of names (core/taxonomy_sources.py)
        from panoptic_ros.core.taxonomy_sources import parse_taxonomy

        return parse_taxonomy(data, str(path))

    @classmethod
    def default(cls) -> Taxonomy:
        return cls.load(default_classes_path())

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_divisor": self.label_divisor,
            "classes": [
                {"id": c.id, "name": c.name, "is_thing": c.is_thing, "color": list(c.color)}
                for c in self.classes
            ],
        }

    # -- lookups --------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def thing_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes if c.is_thing)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes if not c.is_thing)

    def is_thing_lut(self) -> np.ndarray:
        """(num_classes + 1,) bool; the last entry serves the unlabeled index."""
        lut = np.zeros(self.num_classes + 1, dtype=bool)
        lut[list(self.thing_ids)] = True
        return lut

    def color_lut(self) -> np.ndarray:
        """(256, 3) uint8 colour per semantic id (uint8 semantic), black for unlabeled."""
        lut = np.zeros((max(256, self.num_classes + 1), 3), dtype=np.uint8)
        for c in self.classes:
            lut[c.id] = c.color
        return lut

    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def encode_panoptic(
        self, semantic: np.ndarray, instance: np.ndarray, unlabeled: int = 255
    ) -> np.ndarray:
        """class_id * label_divisor + instance_id as int32; -1 where semantic is unlabeled."""
        pan = semantic.astype(np.int32) * self.label_divisor + instance.astype(np.int32)
        pan[semantic == unlabeled] = -1
        return pan


def default_classes_path() -> Path:
    """config/classes.yaml, from the source tree or the installed share/ directory."""
    try:
        return config_file("classes.yaml")
    except FileNotFoundError as exc:
        raise TaxonomyError(str(exc)) from None
