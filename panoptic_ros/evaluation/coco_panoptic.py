"""COCO panoptic format <-> our ``(H, W)`` int32 panoptic maps.

The COCO panoptic format is a folder of PNGs plus one JSON file::

    {"images":      [{"id", "file_name", "width", "height"}, ...],
     "annotations": [{"image_id", "file_name": "<png>", "segments_info":
                        [{"id", "category_id", "area", "bbox": [x, y, w, h], "iscrowd"}, ...]}, ...],
     "categories":  [{"id", "name", "isthing", "color", "supercategory"}, ...]}

Each PNG pixel holds a segment id ``R + 256 G + 256^2 B``; 0 is VOID (no segment).

Mapping to our encoding (``class_id * label_divisor + instance_id``, -1 void):

* category ids: we write ``category_id = class_id + 1`` (COCO ids start at 1). On reading,
  categories are matched to taxonomy classes **by name** when the JSON (or the
  ``categories`` argument, e.g. the ground truth's list for a predictions file that has
  none) carries them; without any categories ``class_id = category_id - 1``.
* segment ids: we write ``segment id = panoptic value + 1`` (so road stuff, value 0, is not
  confused with VOID), which reads back losslessly. Files from elsewhere (arbitrary
  segment ids) are read by numbering each class's segments in ``segments_info`` order:
  thing instances 1, 2, ...; stuff 0 for the first segment of a class, 1, 2, ... for any
  further one (every distinct value stays one segment for the metric).
* ``iscrowd`` segments become VOID (crowd regions are not modelled beyond void).
* pixels whose PNG id is not listed in ``segments_info`` are an error, as in panopticapi.
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


# -- one image ---------------------------------------------------------------------------------
def panoptic_to_segments(
    panoptic: np.ndarray, taxonomy: Taxonomy
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Our map -> (COCO id map ``value + 1``, 0 void; segments_info sorted by id)."""
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
                "category_id": int(class_id + 1),
                "area": int(areas[k]),
                "bbox": [int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)],
                "iscrowd": 0,
            }
        )
    return ids, segments


def segments_to_panoptic(
    ids: np.ndarray,
    segments_info: list[dict[str, Any]],
    taxonomy: Taxonomy,
    cat_to_class: dict[int, int] | None = None,
    *,
    where: str = "",
) -> np.ndarray:
    """COCO id map + segments_info -> our (H, W) int32 map (see the module doc for the rules)."""
    cat_to_class = category_to_class(None, taxonomy) if cat_to_class is None else cat_to_class
    div = taxonomy.label_divisor
    seg_ids, classes, crowd = [], [], []
    for s in segments_info:
        try:
            sid, cat = int(s["id"]), int(s["category_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CocoPanopticError(f"{where}: malformed segments_info entry {s!r}") from exc
        if cat not in cat_to_class:
            raise CocoPanopticError(f"{where}: segment {sid} has unknown category_id {cat}")
        if sid == VOID_ID:
            raise CocoPanopticError(f"{where}: segment id 0 is reserved for VOID")
        seg_ids.append(sid)
        classes.append(cat_to_class[cat])
        crowd.append(bool(s.get("iscrowd", 0)))
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
    uniq, inverse = np.unique(ids, return_inverse=True)
    lut = {sid: (-1 if c else v) for sid, v, c in zip(seg_ids, values, crowd)}
    lut[VOID_ID] = -1
    missing = [int(u) for u in uniq if int(u) not in lut]
    if missing:
        raise CocoPanopticError(
            f"{where}: PNG holds segment ids {missing[:5]} not listed in segments_info"
        )
    mapped = np.array([lut[int(u)] for u in uniq], dtype=np.int32)
    return mapped[inverse.reshape(ids.shape)]


# -- datasets ------------------------------------------------------------------------------------
def write_coco_panoptic(
    json_path: str | Path,
    folder: str | Path,
    items: Iterable[tuple[str, np.ndarray]],
    taxonomy: Taxonomy,
    *,
    image_ext: str = ".png",
) -> dict[str, Any]:
    """Write ``(name, panoptic map)`` pairs as ``folder/<name>.png`` + ``json_path``; returns the JSON dict.

    Image ids are 1, 2, ... in order; ``images[].file_name`` is ``name + image_ext`` (the
    RGB image a model would read), ``annotations[].file_name`` is ``name + ".png"``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, (name, pan) in enumerate(items, start=1):
        ids, segments = panoptic_to_segments(pan, taxonomy)
        png = f"{name}.png"
        write_png_ids(folder / png, ids)
        h, w = ids.shape
        images.append(
            {"id": image_id, "file_name": f"{name}{image_ext}", "width": int(w), "height": int(h)}
        )
        annotations.append({"image_id": image_id, "file_name": png, "segments_info": segments})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": categories_from_taxonomy(taxonomy),
    }
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data))
    return data


@dataclass
class CocoPanopticSet:
    """A COCO panoptic JSON + PNG folder, read lazily one image at a time.

    ``taxonomy`` is the class list the maps are expressed in; ``images`` maps image_id to
    the ``images`` entry (may be empty for prediction files); ``annotations`` maps image_id
    to the annotation (``file_name``, ``segments_info``).
    """

    json_path: Path
    folder: Path
    taxonomy: Taxonomy
    cat_to_class: dict[int, int]
    annotations: dict[Any, dict[str, Any]]
    images: dict[Any, dict[str, Any]] = field(default_factory=dict)
    categories: list[dict[str, Any]] = field(default_factory=list)

    def image_ids(self) -> list[Any]:
        return list(self.annotations)

    def __len__(self) -> int:
        return len(self.annotations)

    def load(self, image_id: Any) -> np.ndarray:
        """(H, W) int32 panoptic map of one image (class * divisor + instance, -1 void)."""
        ann = self.annotations[image_id]
        png = self.folder / ann["file_name"]
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
        return segments_to_panoptic(
            ids, ann["segments_info"], self.taxonomy, self.cat_to_class, where=str(png)
        )

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
) -> CocoPanopticSet:
    """Open a COCO panoptic JSON + PNG folder (default: the JSON path without ``.json``).

    ``taxonomy`` defaults to one built from the JSON's categories (ascending id -> 0..n-1).
    ``categories`` supplies the category list when the JSON has none (predictions files).
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
    cats = data.get("categories") or categories or []
    if taxonomy is None:
        taxonomy = taxonomy_from_categories(cats)
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
        json_path, folder, taxonomy, cat_to_class, annotations, images, list(cats)
    )
