"""Taxonomy: the default class list loads, and broken class lists fail with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core.taxonomy import Taxonomy, TaxonomyError


def test_default_taxonomy_has_things_and_stuff():
    tax = Taxonomy.default()
    assert tax.label_divisor == 1000
    assert tax.num_classes == 8
    assert set(tax.thing_ids) == {5, 6, 7}
    assert set(tax.stuff_ids) == {0, 1, 2, 3, 4}
    lut = tax.is_thing_lut()
    assert lut[6] and not lut[0] and not lut[-1]


def test_roundtrip_through_dict():
    tax = Taxonomy.default()
    assert Taxonomy.from_dict(tax.to_dict()) == tax


@pytest.mark.parametrize(
    "classes, fault",
    [
        (
            [
                {"id": 0, "name": "a", "is_thing": False, "color": [0, 0, 0]},
                {"id": 0, "name": "b", "is_thing": True, "color": [1, 1, 1]},
            ],
            "clash",
        ),
        (
            [
                {"id": 0, "name": "a", "is_thing": False, "color": [0, 0, 0]},
                {"id": 2, "name": "b", "is_thing": True, "color": [1, 1, 1]},
            ],
            "without gaps",
        ),
        ([{"id": 0, "name": "a", "is_thing": False, "color": [0, 0, 300]}], "colour"),
        ([{"id": 0, "name": "a", "is_thing": False}], "malformed"),
        ([], "no classes"),
    ],
)
def test_bad_class_lists_name_the_fault(classes, fault):
    with pytest.raises(TaxonomyError, match=fault):
        Taxonomy.from_dict({"classes": classes})


def test_unreadable_file_names_the_path(tmp_path):
    bad = tmp_path / "classes.yaml"
    bad.write_text("classes: [ {id: 0, name: x")  # truncated YAML
    with pytest.raises(TaxonomyError, match="classes.yaml"):
        Taxonomy.load(bad)
    with pytest.raises(TaxonomyError, match="missing.yaml"):
        Taxonomy.load(tmp_path / "missing.yaml")


def test_encode_panoptic_marks_unlabeled_void():
    tax = Taxonomy.default()
    sem = np.array([[0, 6], [255, 6]], dtype=np.uint8)
    inst = np.array([[0, 2], [0, 3]], dtype=np.uint16)
    pan = tax.encode_panoptic(sem, inst)
    assert pan.dtype == np.int32
    assert pan.tolist() == [[0, 6002], [-1, 6003]]
