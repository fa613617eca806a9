"""COCO panoptic format <-> our ``(H, W)`` int32 panoptic maps.

The COCO panoptic format is a folder of PNGs plus one JSON file::

    {"images":      [{"id", "file_name", "width", "height"}, ...],
     "annotations": [{"image_id", "file_name": "<png>", "segments_info":
                        [{"id", "category_id", "area", "bbox": [x, y, w, h], "iscrowd"}, ...]}, ...],
     "categories":  [{"id", "name", "isthing", "color", "supercategory"}, ...]}

Each PNG pixel holds a segment id ``R + 256 G + 256^2 B``; 0 is VOID (no segment).

Mapping to our encoding (``class_id * label_divisor + instance_id``, -1 void):

* category ids: we write ``category_id = class_id + 1`` (COCO ids start at 1), or the id
  of the ``categories`` list we are given (class k = the k-th category in ascending id
  order, e.g. a ground truth's sparse ids 1, 7, 24, ...). On reading, categories are
  matched to taxonomy classes **by name** when the JSON (or the ``categories`` argument)
  carries them; without any categories ``class_id = category_id - 1``.
* segment ids: we write ``segment id = panoptic value + 1`` (so road stuff, value 0, is not
  confused with VOID), which reads back losslessly. Files from elsewhere (arbitrary
  segment ids) are read by numbering each class's segments in ``segments_info`` order:
  thing instances 1, 2, ...; stuff 0 for the first segment of a class, 1, 2, ... for any
  further one (every distinct value stays one segment for the metric).
* ``iscrowd`` segments stay segments of their class in the map and are listed apart
  (:class:`PanopticAnnotation` ``crowd``), which is what the metric needs for
  panopticapi's crowd rules (never matched, and they excuse overlapping predictions of
  their own class; see ``evaluation/metrics.py``). The writer carries ``iscrowd`` back out.
* ground-truth ``area`` values are kept (panopticapi scores with the JSON's area); for a
  prediction file the area is the PNG's pixel count, as in panopticapi.
* pixels whose PNG id is not listed in ``segments_info`` are an error (panopticapi
  rejects them in predictions), and so is a listed prediction segment that the PNG does
  not hold (rejected by panopticapi); a listed ground-truth segment missing from its PNG
  is kept, and panopticapi counts it as a false negative.
* category ids are read through the ground truth's ``categories`` (a prediction file's
  own ``categories`` are ignored, as in panopticapi); :func:`match_categories` maps a
  model's class names onto a COCO category list (case-, space-, ``_``- and
  ``-``-insensitive) and lists what does not map, in both directions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from panoptic_ros.core.taxonomy import ClassInfo, Taxonomy

VOID_ID = 0  #: COCO panoptic PNG id of unlabelled pixels


class CocoPanopticError(ValueError):
    """Unusable COCO panoptic data (missing files, malformed JSON, mismatching PNG)."""


# -- pixel id <-> RGB ----------------------------------------------------------------------
def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) int64 id ``R + 256 G + 256^2 B``."""
    rgb = np.asarray(rgb).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) non-negative ids < 2^24 -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise CocoPanopticError("segment ids must lie in 0 .. 2^24 - 1 to fit an RGB PNG")
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def read_png_ids(path: str | Path) -> np.ndarray:
    """Read a COCO panoptic PNG -> (H, W) int64 segment ids."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise CocoPanopticError(f"panoptic PNG not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CocoPanopticError(f"cannot decode PNG {path}")
    if img.dtype != np.uint8:
        raise CocoPanopticError(f"{path}: expected an 8-bit PNG, got {img.dtype}")
    if img.ndim == 2:
        return img.astype(np.int64)
    if img.shape[2] == 4:
        img = img[..., :3]
    return rgb_to_id(img[..., ::-1])  # OpenCV is BGR


def write_png_ids(path: str | Path, ids: np.ndarray) -> None:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(id_to_rgb(ids)[..., ::-1])):
        raise CocoPanopticError(f"cannot write PNG {path}")


# -- categories ------------------------------------------------------------------------------
def categories_from_taxonomy(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    """COCO ``categories`` for a taxonomy: ``id = class_id + 1``."""
    return [
        {
            "id": c.id + 1,
            "name": c.name,
            "isthing": int(c.is_thing),
            "color": list(c.color),
            "supercategory": c.name,
        }
        for c in taxonomy.classes
    ]


def taxonomy_from_categories(
    categories: list[dict[str, Any]], label_divisor: int = 1000
) -> Taxonomy:
    """A Taxonomy from COCO categories: classes in ascending category-id order, ids 0..n-1."""
    if not categories:
        raise CocoPanopticError("the JSON has no categories to build a class list from")
    try:
        cats = sorted(categories, key=lambda c: int(c["id"]))
        classes = tuple(
            ClassInfo(
                i,
                str(c.get("name", f"class_{c['id']}")),
                bool(c.get("isthing", 0)),
                tuple(int(v) for v in c.get("color", (0, 0, 0))),
            )
            for i, c in enumerate(cats)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CocoPanopticError(f"malformed categories: {exc!r}") from exc
    return Taxonomy(classes, label_divisor)


def category_to_class(
    categories: list[dict[str, Any]] | None, taxonomy: Taxonomy
) -> dict[int, int]:
    """category_id -> class_id: by name when categories are given, else ``category_id - 1``."""
    if not categories:
        return {c.id + 1: c.id for c in taxonomy.classes}
    by_name = {c.name: c.id for c in taxonomy.classes}
    mapping: dict[int, int] = {}
    unknown = []
    for cat in categories:
        try:
            cid, name = int(cat["id"]), str(cat["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CocoPanopticError(f"malformed category {cat!r}: {exc!r}") from exc
        if name not in by_name:
            unknown.append(name)
            continue
        mapping[cid] = by_name[name]
    if unknown:
        raise CocoPanopticError(
            f"categories {unknown} are not in the taxonomy ({', '.join(by_name)}); pass a matching taxonomy"
        )
    return mapping


def normalize_name(name: str) -> str:
    """The key class names are matched by: lower case, without spaces, ``_`` and ``-``.

    So a model's ``traffic_light`` meets COCO's ``traffic light``, ``Road`` meets ``road``.
    """
    return "".join(ch for ch in str(name).lower() if not ch.isspace() and ch not in "_-")


@dataclass(frozen=True)
class CategoryMatch:
    """A model's classes matched to a COCO category list by name (:func:`match_categories`).

    ``class_to_category_class[k]`` is the class id, in the taxonomy built from the
    categories, of model class k, or -1 when its name is not among the categories.
    ``unmatched_categories``: category names no model class carries (the model never
    predicts them: every such ground-truth segment is a false negative);
    ``unmatched_classes``: model class names not among the categories (their predicted
    pixels become VOID, as a COCO writer could not write them).
    """

    class_to_category_class: np.ndarray
    unmatched_categories: tuple[str, ...]
    unmatched_classes: tuple[str, ...]

    @property
    def n_matched(self) -> int:
        return int(np.count_nonzero(self.class_to_category_class >= 0))

    def describe(self) -> str:
        """Human-readable lines on what did not map (empty when everything did)."""
        lines = []
        cats, classes = self.unmatched_categories, self.unmatched_classes
        if cats:
            one = len(cats) == 1
            lines.append(
                f"{len(cats)} ground-truth categor{'y has' if one else 'ies have'} no model class "
                f"(scored: all {'its' if one else 'their'} segments are false negatives): "
                + ", ".join(cats)
            )
        if classes:
            one = len(classes) == 1
            lines.append(
                f"{len(classes)} model class{' is' if one else 'es are'} not among the ground-truth "
                f"categories (predicted pixels of {'it' if one else 'them'} count as VOID): "
                + ", ".join(classes)
            )
        return "\n".join(lines)


def match_categories(categories: list[dict[str, Any]], model_taxonomy: Taxonomy) -> CategoryMatch:
    """Map a model's classes onto COCO ``categories`` by :func:`normalize_name`.

    Class ids on the category side are those of :func:`taxonomy_from_categories` (ascending
    category id). Two names that normalise alike on one side are an error (ambiguous).
    """
    cats = sorted(categories, key=lambda c: int(c["id"]))
    cat_key: dict[str, int] = {}
    for k, cat in enumerate(cats):
        key = normalize_name(cat.get("name", ""))
        if key in cat_key:
            raise CocoPanopticError(
                f"categories {cats[cat_key[key]].get('name')!r} and {cat.get('name')!r} have the same "
                "name up to case, spaces, '_' and '-'"
            )
        cat_key[key] = k
    cls_key: dict[str, int] = {}
    for c in model_taxonomy.classes:
        key = normalize_name(c.name)
        if key in cls_key:
            raise CocoPanopticError(
                f"model classes {model_taxonomy.classes[cls_key[key]].name!r} and {c.name!r} have the "
                "same name up to case, spaces, '_' and '-'"
            )
        cls_key[key] = c.id
    lut = np.full(model_taxonomy.num_classes, -1, dtype=np.int64)
    for key, cid in cls_key.items():
        if key in cat_key:
            lut[cid] = cat_key[key]
    return CategoryMatch(
        lut,
        tuple(str(cats[k].get("name")) for key, k in cat_key.items() if key not in cls_key),
        tuple(
            model_taxonomy.classes[cid].name for key, cid in cls_key.items() if key not in cat_key
        ),
    )


def remap_classes(
    panoptic: np.ndarray, class_lut: np.ndarray, src_divisor: int, dst_divisor: int
) -> np.ndarray:
    """``class*src_divisor+inst`` -> ``class_lut[class]*dst_divisor+inst``; -1 in the LUT -> VOID (-1)."""
    pan = np.asarray(panoptic).astype(np.int64)
    void = pan < 0
    cls = np.where(void, 0, pan // src_divisor)
    inst = np.where(void, 0, pan % src_divisor)
    if inst.size and int(inst.max()) >= dst_divisor:
        raise CocoPanopticError(
            f"instance id {int(inst.max())} does not fit label_divisor {dst_divisor}"
        )
    lut = np.asarray(class_lut, dtype=np.int64)
    if cls.size and int(cls.max()) >= len(lut):
        raise CocoPanopticError(
            f"prediction holds class {int(cls.max())}, but the class list has {len(lut)} classes"
        )
    new_cls = lut[cls]
    out = np.where(void | (new_cls < 0), -1, new_cls * dst_divisor + inst)
    return out.astype(np.int32)


# -- one image ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanopticAnnotation:
    """One image's ground truth as the metric takes it.

    ``panoptic``: (H, W) int32, ``class * divisor + instance``, -1 VOID; crowd segments are
    segments of their class here. ``crowd``: the values of the ``iscrowd`` segments in
    ``segments_info`` order. ``areas``: value -> area for every listed segment (the JSON's
    ``area`` where given, else the pixel count), as panopticapi scores ground truth.
    """

    panoptic: np.ndarray
    crowd: tuple[int, ...] = ()
    areas: dict[int, int] | None = None


def panoptic_to_segments(
    panoptic: np.ndarray,
    taxonomy: Taxonomy,
    crowd: Iterable[int] = (),
    categories: list[dict[str, Any]] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Our map -> (COCO id map ``value + 1``, 0 void; segments_info sorted by id).

    ``crowd``: map values written with ``iscrowd: 1``. ``categories``: the COCO category
    list whose k-th entry (ascending id) is class k (default: ``category_id = class + 1``).
    """
    pan = np.asarray(panoptic)
    if pan.ndim != 2 or not np.issubdtype(pan.dtype, np.integer):
        raise CocoPanopticError(
            f"panoptic map must be a 2-D integer array, got {pan.dtype} {pan.shape}"
        )
    pan = pan.astype(np.int64)
    max_id = taxonomy.num_classes * taxonomy.label_divisor
    if pan.size and (pan.max() >= max_id or (pan.min() < 0 and np.any(pan[pan < 0] != -1))):
        raise CocoPanopticError(
            "panoptic map holds ids outside the taxonomy (or negative ids other than -1)"
        )
    cat_ids = _category_ids(taxonomy, categories)
    crowd_set = {int(v) for v in crowd}
    ids = np.where(pan < 0, VOID_ID, pan + 1)
    values, inverse, areas = np.unique(ids, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(ids.shape)
    h, w = ids.shape
    ys, xs = np.indices((h, w))
    n = len(values)
    flat = inverse.ravel()
    x0 = np.full(n, w, np.int64)
    y0 = np.full(n, h, np.int64)
    x1 = np.full(n, -1, np.int64)
    y1 = np.full(n, -1, np.int64)
    np.minimum.at(x0, flat, xs.ravel())
    np.minimum.at(y0, flat, ys.ravel())
    np.maximum.at(x1, flat, xs.ravel())
    np.maximum.at(y1, flat, ys.ravel())
    segments = []
    for k, sid in enumerate(values.tolist()):
        if sid == VOID_ID:
            continue
        class_id = (sid - 1) // taxonomy.label_divisor
        segments.append(
            {
                "id": int(sid),
                "category_id": int(cat_ids[class_id]),
                "area": int(areas[k]),
                "bbox": [int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)],
                "iscrowd": int(sid - 1 in crowd_set),
            }
        )
    return ids, segments


def _category_ids(taxonomy: Taxonomy, categories: list[dict[str, Any]] | None) -> list[int]:
    """COCO category id of each class: ``class + 1``, or the k-th of ``categories`` by id."""
    if not categories:
        return [c.id + 1 for c in taxonomy.classes]
    ids = sorted(int(c["id"]) for c in categories)
    if len(ids) != taxonomy.num_classes:
        raise CocoPanopticError(
            f"{len(ids)} categories for a taxonomy of {taxonomy.num_classes} classes"
        )
    return ids


def segments_to_annotation(
    ids: np.ndarray,
    segments_info: list[dict[str, Any]],
    taxonomy: Taxonomy,
    cat_to_class: dict[int, int] | None = None,
    *,
    where: str = "",
    prediction: bool = False,
) -> PanopticAnnotation:
    """COCO id map + segments_info -> :class:`PanopticAnnotation` (module doc: the rules).

    ``prediction=True`` reads a prediction as panopticapi does: ``iscrowd`` and ``area`` are
    ignored (areas are pixel counts), and a listed segment absent from the PNG is an error.
    """
    cat_to_class = category_to_class(None, taxonomy) if cat_to_class is None else cat_to_class
    div = taxonomy.label_divisor
    seg_ids, classes, crowd, json_area = [], [], [], []
    for s in segments_info:
        try:
            sid, cat = int(s["id"]), int(s["category_id"])
            area = None if prediction or s.get("area") is None else int(s["area"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CocoPanopticError(f"{where}: malformed segments_info entry {s!r}") from exc
        if cat not in cat_to_class:
            raise CocoPanopticError(f"{where}: segment {sid} has unknown category_id {cat}")
        if sid == VOID_ID:
            raise CocoPanopticError(f"{where}: segment id 0 is reserved for VOID")
        seg_ids.append(sid)
        classes.append(cat_to_class[cat])
        crowd.append(not prediction and bool(s.get("iscrowd", 0)))
        json_area.append(area)
    if len(set(seg_ids)) != len(seg_ids):
        raise CocoPanopticError(f"{where}: duplicate segment ids in segments_info")

    # Our own files: id - 1 decodes to the class of the category -> keep the instance ids.
    ours = all((sid - 1) // div == cls and sid - 1 >= 0 for sid, cls in zip(seg_ids, classes))
    values = []
    counters: dict[int, int] = {}
    for sid, cls in zip(seg_ids, classes):
        if ours:
            values.append(sid - 1)
            continue
        thing = taxonomy.classes[cls].is_thing
        inst = counters.get(cls, 1 if thing else 0)
        counters[cls] = inst + 1
        if inst >= div:
            raise CocoPanopticError(f"{where}: more than {div - 1} segments of class {cls}")
        values.append(cls * div + inst)

    ids = np.asarray(ids, dtype=np.int64)
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    lut = dict(zip(seg_ids, values))
    lut[VOID_ID] = -1
    missing = [int(u) for u in uniq if int(u) not in lut]
    if missing:
        raise CocoPanopticError(
            f"{where}: PNG holds segment ids {missing[:5]} not listed in segments_info"
        )
    pixel_count = dict(zip(uniq.tolist(), counts.tolist()))
    if prediction:
        absent = [sid for sid in seg_ids if sid not in pixel_count]
        if absent:
            raise CocoPanopticError(
                f"{where}: segments_info lists segment ids {absent[:5]} that the PNG does not hold"
            )
    mapped = np.array([lut[int(u)] for u in uniq], dtype=np.int32)
    panoptic = mapped[inverse.reshape(ids.shape)]
    if prediction:
        return PanopticAnnotation(panoptic)
    areas = {
        v: (a if a is not None else pixel_count.get(sid, 0))
        for sid, v, a in zip(seg_ids, values, json_area)
    }
    return PanopticAnnotation(panoptic, tuple(v for v, c in zip(values, crowd) if c), areas)


def segments_to_panoptic(
    ids: np.ndarray,
    segments_info: list[dict[str, Any]],
    taxonomy: Taxonomy,
    cat_to_class: dict[int, int] | None = None,
    *,
    where: str = "",
) -> np.ndarray:
    """The map of :func:`segments_to_annotation` (crowd segments are ordinary segments in it)."""
    return segments_to_annotation(ids, segments_info, taxonomy, cat_to_class, where=where).panoptic


# -- datasets ------------------------------------------------------------------------------------
class CocoPanopticWriter:
    """Writes a COCO panoptic set one image at a time: ``folder/<name>.png`` now, the JSON on close.

    ``categories`` (class k = the k-th by ascending id) replaces the ``class + 1`` ids, e.g.
    to write predictions in a ground truth's sparse category ids.
    """

    def __init__(
        self,
        json_path: str | Path,
        folder: str | Path,
        taxonomy: Taxonomy,
        *,
        categories: list[dict[str, Any]] | None = None,
    ) -> None:
        self.json_path, self.folder = Path(json_path), Path(folder)
        self.taxonomy, self.categories = taxonomy, categories
        self.folder.mkdir(parents=True, exist_ok=True)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        panoptic: np.ndarray,
        crowd: Iterable[int] = (),
        *,
        image: dict[str, Any] | None = None,
        image_ext: str = ".png",
    ) -> None:
        """One image: ``name.png`` (may hold sub-folders); ``image`` is its ``images`` entry
        (default: the next id, ``name + image_ext``, the map's size)."""
        ids, segments = panoptic_to_segments(panoptic, self.taxonomy, crowd, self.categories)
        png = f"{name}.png"
        write_png_ids(self.folder / png, ids)
        h, w = ids.shape
        if image is None:
            image = {
                "id": len(self.images) + 1,
                "file_name": f"{name}{image_ext}",
                "width": int(w),
                "height": int(h),
            }
        self.images.append(dict(image))
        self.annotations.append(
            {"image_id": image["id"], "file_name": png, "segments_info": segments}
        )

    def close(self) -> dict[str, Any]:
        """Write the JSON; returns its dict."""
        data = {
            "images": self.images,
            "annotations": self.annotations,
            "categories": list(self.categories)
            if self.categories
            else categories_from_taxonomy(self.taxonomy),
        }
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(data))
        return data


def write_coco_panoptic(
    json_path: str | Path,
    folder: str | Path,
    items: Iterable[tuple[Any, ...]],
    taxonomy: Taxonomy,
    *,
    image_ext: str = ".png",
    categories: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``(name, panoptic map[, crowd values])`` items as ``folder/<name>.png`` + ``json_path``.

    Returns the JSON dict. Image ids are 1, 2, ... in order; ``images[].file_name`` is
    ``name + image_ext`` (the RGB image a model would read), ``annotations[].file_name``
    is ``name + ".png"``. A third item element lists the map values written
    ``iscrowd: 1``; ``categories`` as for :class:`CocoPanopticWriter`.
    """
    writer = CocoPanopticWriter(json_path, folder, taxonomy, categories=categories)
    for item in items:
        writer.add(item[0], item[1], item[2] if len(item) > 2 else (), image_ext=image_ext)
    return writer.close()


@dataclass
class CocoPanopticSet:
    """A COCO panoptic JSON + PNG folder, read lazily one image at a time.

    ``taxonomy`` is the class list the maps are expressed in; ``images`` maps image_id to
    the ``images`` entry (may be empty for prediction files); ``annotations`` maps image_id
    to the annotation (``file_name``, ``segments_info``). ``prediction``: read as
    panopticapi reads predictions (no crowd, pixel-count areas, strict PNG/JSON agreement).
    """

    json_path: Path
    folder: Path
    taxonomy: Taxonomy
    cat_to_class: dict[int, int]
    annotations: dict[Any, dict[str, Any]]
    images: dict[Any, dict[str, Any]] = field(default_factory=dict)
    categories: list[dict[str, Any]] = field(default_factory=list)
    prediction: bool = False
    json_categories: list[dict[str, Any]] = field(default_factory=list)

    def image_ids(self) -> list[Any]:
        return list(self.annotations)

    def __len__(self) -> int:
        return len(self.annotations)

    def png_path(self, image_id: Any) -> Path:
        return self.folder / self.annotations[image_id]["file_name"]

    def load_annotation(self, image_id: Any) -> PanopticAnnotation:
        """One image: map, crowd values and areas (see :class:`PanopticAnnotation`)."""
        ann = self.annotations[image_id]
        png = self.png_path(image_id)
        ids = read_png_ids(png)
        info = self.images.get(image_id)
        if (
            info
            and "height" in info
            and "width" in info
            and ids.shape != (int(info["height"]), int(info["width"]))
        ):
            raise CocoPanopticError(
                f"{png}: PNG size {ids.shape[1]}x{ids.shape[0]} differs from the JSON's "
                f"{info['width']}x{info['height']}"
            )
        return segments_to_annotation(
            ids,
            ann["segments_info"],
            self.taxonomy,
            self.cat_to_class,
            where=str(png),
            prediction=self.prediction,
        )

    def load(self, image_id: Any) -> np.ndarray:
        """(H, W) int32 panoptic map of one image (class * divisor + instance, -1 void)."""
        return self.load_annotation(image_id).panoptic

    def __iter__(self) -> Iterator[tuple[Any, np.ndarray]]:
        for image_id in self.annotations:
            yield image_id, self.load(image_id)

    def image_file_name(self, image_id: Any) -> str:
        """``images[].file_name`` (the RGB image), or the PNG name with the extension swapped."""
        info = self.images.get(image_id)
        if info and "file_name" in info:
            return str(info["file_name"])
        return str(self.annotations[image_id]["file_name"])


def open_coco_panoptic(
    json_path: str | Path,
    folder: str | Path | None = None,
    taxonomy: Taxonomy | None = None,
    categories: list[dict[str, Any]] | None = None,
    *,
    prediction: bool = False,
    label_divisor: int | None = None,
) -> CocoPanopticSet:
    """Open a COCO panoptic JSON + PNG folder (default: the JSON path without ``.json``).

    ``taxonomy`` defaults to one built from the categories (ascending id -> 0..n-1, with
    ``label_divisor`` when given). ``categories``, when given, is the list the file's
    category ids are read through, whatever the file carries (a prediction file is read
    through its ground truth's list, as in panopticapi); otherwise the JSON's own list.
    ``prediction``: read as panopticapi reads predictions (see :class:`CocoPanopticSet`).
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        raise CocoPanopticError(f"JSON file not found: {json_path}")
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise CocoPanopticError(f"cannot read {json_path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise CocoPanopticError(f"{json_path}: not a COCO panoptic file (no 'annotations' list)")
    folder = Path(folder) if folder is not None else json_path.with_suffix("")
    if not folder.is_dir():
        raise CocoPanopticError(f"PNG folder not found: {folder}")
    json_cats = data.get("categories") or []
    if not isinstance(json_cats, list):
        raise CocoPanopticError(f"{json_path}: 'categories' is not a list")
    cats = list(categories) if categories else json_cats
    if taxonomy is None:
        taxonomy = (
            taxonomy_from_categories(cats)
            if label_divisor is None
            else taxonomy_from_categories(cats, label_divisor)
        )
    cat_to_class = category_to_class(cats, taxonomy)
    annotations: dict[Any, dict[str, Any]] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "segments_info" not in ann or "file_name" not in ann:
            raise CocoPanopticError(
                f"{json_path}: annotation {i} lacks 'segments_info' or 'file_name' (not COCO panoptic format)"
            )
        if "image_id" not in ann:
            raise CocoPanopticError(f"{json_path}: annotation {i} lacks 'image_id'")
        if ann["image_id"] in annotations:
            raise CocoPanopticError(
                f"{json_path}: two annotations for image_id {ann['image_id']!r}"
            )
        annotations[ann["image_id"]] = ann
    images = {
        img["id"]: img for img in data.get("images", []) if isinstance(img, dict) and "id" in img
    }
    return CocoPanopticSet(
        json_path,
        folder,
        taxonomy,
        cat_to_class,
        annotations,
        images,
        list(cats),
        prediction,
        list(json_cats),
    )


def pq_compute(
    gt_json: str | Path,
    pred_json: str | Path,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
):
    """panopticapi's ``pq_compute`` on our metric: score a COCO panoptic prediction set.

    Returns ``(PQReport, taxonomy)``; the taxonomy is built from the ground truth's
    categories (class k = k-th category by id, ``PQReport.per_class`` keyed by name).
    Every ground-truth image needs a prediction (as in panopticapi); extra predicted
    images are ignored.
    """
    from panoptic_ros.evaluation.metrics import PanopticQuality

    gt = open_coco_panoptic(gt_json, gt_folder)
    pred = open_coco_panoptic(
        pred_json, pred_folder, gt.taxonomy, categories=gt.categories, prediction=True
    )
    missing = [i for i in gt.image_ids() if i not in pred.annotations]
    if missing:
        raise CocoPanopticError(f"{pred_json}: no prediction for image_id(s) {missing[:5]}")
    metric = PanopticQuality(gt.taxonomy)
    for image_id in gt.image_ids():
        score_image(metric, pred.load(image_id), gt.load_annotation(image_id), where=image_id)
    return metric.compute(), gt.taxonomy


def score_image(metric, pred: np.ndarray, gt: PanopticAnnotation, *, where: Any = "") -> None:
    """``metric.update`` with the ground truth's crowd segments and JSON areas."""
    if pred.shape != gt.panoptic.shape:
        raise CocoPanopticError(
            f"image {where!r}: prediction is {pred.shape[1]}x{pred.shape[0]} but ground truth is "
            f"{gt.panoptic.shape[1]}x{gt.panoptic.shape[0]}"
        )
    metric.update(pred, gt.panoptic, crowd=gt.crowd, areas=gt.areas)
