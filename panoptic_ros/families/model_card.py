"""What ``model`` points at -> ``ModelSource``: the ONNX graph's signature, the model card and the
taxonomy, before any family is chosen (docs/models.md).

``model`` may be:

* ``default`` or a model directory of this project (``weights.safetensors`` + ``metadata.json``);
* a folder as ``optimum-cli export onnx`` writes it: ``model.onnx`` + ``config.json``
  (``id2label``, ``model_type``) + ``preprocessor_config.json``;
* a bare ``.onnx`` (Ultralytics keeps ``task``, ``names``, ``imgsz``, ``stride`` in its
  metadata_props);
* any ``.onnx`` with a sidecar model card ``<stem>.card.yaml`` (or ``card.yaml`` in the folder).

The card (YAML mapping; every key optional) says what the graph cannot: ``family``, ``input``,
``layout``, ``color``, ``scale``, ``mean``, ``std``, ``input_size``, ``resize``, ``outputs``,
``thresholds`` and ``taxonomy`` (a file, relative to the card, or an inline class list). For a
Hugging Face folder the card also carries ``hf_config`` (config.json) and ``preprocessor``
(preprocessor_config.json); the families read those.

Taxonomy, first found wins: the card's ``taxonomy``; ``<stem>.json`` / ``metadata.json`` with a
``taxonomy`` (this project); ``classes.yaml`` beside the graph (any format of
core/taxonomy_sources.py); ``config.json`` ``id2label``; the ONNX metadata ``names``. None found:
the default 8 classes, refused by the factory when the graph predicts another number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from panoptic_ros.core.taxonomy import Taxonomy, TaxonomyError, describe_yaml_error
from panoptic_ros.core.taxonomy_sources import load_taxonomy_file, parse_taxonomy
from panoptic_ros.families.base import OnnxSignature, TensorInfo
from panoptic_ros.families.model_store import (
    METADATA_FILE,
    WEIGHTS_FILE,
    ModelError,
    ModelInfo,
    load_model_info,
    load_onnx_graph,
)

CARD_SUFFIX = ".card.yaml"
CARD_KEYS = (
    "family",
    "input",
    "layout",
    "color",
    "scale",
    "mean",
    "std",
    "input_size",
    "resize",
    "outputs",
    "thresholds",
    "taxonomy",
    "notes",
)
DOCS = "see docs/models.md"


@dataclass
class ModelSource:
    """Everything known about a model before a family is chosen.

    info: set for this project's weight directories (the torch backend and the ONNX export cache
        need it); onnx_path: the graph for every other source.
    taxonomy_source: the file (or metadata) the taxonomy came from; "" when none was found.
    looked_for: where a taxonomy was looked for (for the "no taxonomy" error).
    """

    where: Path
    signature: OnnxSignature
    card: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None
    info: ModelInfo | None = None
    taxonomy: Taxonomy | None = None
    taxonomy_source: str = ""
    looked_for: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def read_card(path: Path) -> dict[str, Any]:
    """A model card file -> mapping; ModelError naming the file, the fault and the known keys."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelError(f"model card {path}: {describe_yaml_error(exc)}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"model card {path}: expected a mapping of {', '.join(CARD_KEYS)}; {DOCS}")
    unknown = sorted(set(data) - set(CARD_KEYS))
    if unknown:
        raise ModelError(
            f"model card {path}: unknown key(s) {unknown}; known: {', '.join(CARD_KEYS)}; {DOCS}"
        )
    return data


_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
}


def read_signature(path: Path) -> OnnxSignature:
    """Inputs (initializers excluded), outputs and metadata_props of an ONNX file, without its weights."""
    m = load_onnx_graph(path)

    def info(vi) -> TensorInfo:
        tt = vi.type.tensor_type
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
        )
        return TensorInfo(vi.name, shape, _ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)))

    inits = {i.name for i in m.graph.initializer}
    return OnnxSignature(
        tuple(info(i) for i in m.graph.input if i.name not in inits),
        tuple(info(o) for o in m.graph.output),
        {p.key: p.value for p in m.metadata_props},
    )


def ours_signature(info: ModelInfo, batch: int = 1) -> OnnxSignature:
    """The contract graph a weight directory exports to (no export needed to know it)."""
    h, w = info.input_size
    return OnnxSignature(
        (
            TensorInfo("image", (batch, 3, h, w), "float32"),
            TensorInfo("center_threshold", (1,), "float32"),
        ),
        (
            TensorInfo("semantic", (batch, h, w), "int32"),
            TensorInfo("instance", (batch, h, w), "int32"),
            TensorInfo("center_score", (batch, info.top_k), "float32"),
        ),
        {},
    )


def resolve_model(model: str | Path | ModelInfo = "default") -> ModelSource:
    """``model`` -> ModelSource (module docstring); ModelError naming the path and the fault.
    A ModelInfo (model_store.load_model_info) is accepted as well."""
    if isinstance(model, ModelInfo):
        return _weights_source(model) if model.onnx_path is None else _onnx_source(model.onnx_path)
    if isinstance(model, str) and model == "default":
        info = load_model_info("default")
        return _weights_source(info)
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelError(
            f"model not found: {path} (give 'default', a model directory, a folder with model.onnx, "
            f"or an .onnx file; {DOCS})"
        )
    if path.is_dir():
        if (path / METADATA_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
            return _weights_source(load_model_info(path))
        onnx_files = sorted(path.glob("*.onnx"))
        if (path / "model.onnx").is_file():
            return _onnx_source(path / "model.onnx")
        if len(onnx_files) == 1:
            return _onnx_source(onnx_files[0])
        raise ModelError(
            f"{path}: not a model directory (no {METADATA_FILE} + {WEIGHTS_FILE}) and no single "
            f"model.onnx (found {[p.name for p in onnx_files]}); {DOCS}"
        )
    if path.suffix.lower() == ".onnx":
        return _onnx_source(path)
    raise ModelError(f"{path}: not a model directory or an .onnx file; {DOCS}")


def _weights_source(info: ModelInfo) -> ModelSource:
    meta = info.directory / METADATA_FILE
    return ModelSource(
        info.directory,
        ours_signature(info),
        {"family": "ours"},
        None,
        info,
        info.taxonomy,
        str(meta),
        [str(meta)],
    )


def _onnx_source(path: Path) -> ModelSource:
    path = path.resolve()
    sig = read_signature(path)
    folder = path.parent
    card: dict[str, Any] = {}
    card_path = None
    for cand in (path.with_name(path.stem + CARD_SUFFIX), folder / "card.yaml"):
        if cand.is_file():
            card, card_path = read_card(cand), cand
            break
    hf_config = folder / "config.json"
    if hf_config.is_file():
        card.setdefault("hf_config", _read_json(hf_config))
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        card.setdefault("preprocessor", _read_json(pre))
    src = ModelSource(path, sig, card, path)
    _find_taxonomy(src, card_path)
    return src


def _find_taxonomy(src: ModelSource, card_path: Path | None) -> None:
    path = src.onnx_path
    assert path is not None
    folder = path.parent
    looked = src.looked_for

    def done(tax: Taxonomy, where: str) -> None:
        src.taxonomy, src.taxonomy_source = tax, where

    try:
        if card_path is not None and src.card.get("taxonomy") is not None:
            t = src.card["taxonomy"]
            looked.append(f"{card_path} 'taxonomy'")
            if isinstance(t, str):
                f = (card_path.parent / t).resolve()
                if not f.is_file():
                    raise ModelError(f"model card {card_path}: taxonomy file {f} not found")
                return done(load_taxonomy_file(f), str(f))
            return done(parse_taxonomy(t, f"{card_path} 'taxonomy'"), str(card_path))
        for cand in (path.with_suffix(".json"), folder / METADATA_FILE):
            looked.append(str(cand))
            if cand.is_file():
                meta = _read_json(cand)
                if "taxonomy" in meta:
                    return done(parse_taxonomy(meta["taxonomy"], str(cand)), str(cand))
        ypath = folder / "classes.yaml"
        looked.append(str(ypath))
        if ypath.is_file():
            return done(load_taxonomy_file(ypath), str(ypath))
        cfg = src.card.get("hf_config")
        looked.append(str(folder / "config.json") + " id2label")
        if isinstance(cfg, dict) and cfg.get("id2label"):
            return done(
                parse_taxonomy({"id2label": cfg["id2label"]}, str(folder / "config.json")),
                str(folder / "config.json"),
            )
        looked.append(f"{path} metadata 'names'")
        if "names" in src.signature.metadata:
            where = f"{path} metadata 'names'"
            return done(parse_taxonomy({"names": src.signature.metadata["names"]}, where), where)
    except TaxonomyError as exc:
        raise ModelError(str(exc)) from exc
