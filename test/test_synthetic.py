"""Procedural scenes: reproducible, exact and self-consistent ground truth, disjoint seed sets."""

import numpy as np
import pytest

from panoptic_ros.core import synthetic
from panoptic_ros.core.taxonomy import Taxonomy

TAX = Taxonomy.default()


@pytest.mark.parametrize("size", [(240, 320), (180, 320), (97, 131)])
def test_reproducible(size):
    a = synthetic.generate_scene(123, *size, TAX)
    b = synthetic.generate_scene(123, *size, TAX)
    for name in ("image", "semantic", "instance", "panoptic"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = synthetic.generate_scene(124, *size, TAX)
    assert not np.array_equal(a.image, c.image)


def test_shapes_and_dtypes():
    s = synthetic.generate_scene(5, 240, 320, TAX)
    assert s.image.shape == (240, 320, 3) and s.image.dtype == np.uint8
    assert s.semantic.shape == (240, 320) and s.semantic.dtype == np.uint8
    assert s.instance.dtype == np.uint16 and s.panoptic.dtype == np.int32


@pytest.mark.parametrize(
    "seed", [0, 1, 2, 3, synthetic.VALIDATION_SEED_START, synthetic.VALIDATION_SEED_START + 7]
)
def test_ground_truth_consistency(seed):
    s = synthetic.generate_scene(seed, 240, 320, TAX)
    sem, ins, pan = s.semantic.astype(np.int32), s.instance.astype(np.int32), s.panoptic
    void = s.semantic == 255
    assert np.array_equal(pan[~void], sem[~void] * TAX.label_divisor + ins[~void])
    assert (pan[void] == -1).all()
    assert (ins[void] == 0).all()
    thing = np.isin(s.semantic, TAX.thing_ids)
    stuff = np.isin(s.semantic, TAX.stuff_ids)
    assert (ins[thing] > 0).all(), "every thing pixel has an instance id"
    assert (ins[stuff] == 0).all(), "stuff pixels never have an instance id"
    assert set(np.unique(s.semantic)) <= set(range(TAX.num_classes)) | {255}
    # one class per instance, ids contiguous 1..N
    ids = np.unique(ins[ins > 0])
    assert list(ids) == list(range(1, len(ids) + 1))
    for i in ids:
        assert len(np.unique(sem[ins == i])) == 1
    # segments agree with the maps
    for seg in s.segments:
        m = pan == seg.panoptic_id
        assert m.sum() == seg.area
        ys, xs = np.nonzero(m)
        assert seg.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert seg.is_thing == (seg.class_id in TAX.thing_ids)


def test_scenes_have_things_and_stuff():
    classes = set()
    n_inst = 0
    for seed in range(12):
        s = synthetic.generate_scene(seed, 240, 320, TAX)
        classes |= set(np.unique(s.semantic).tolist())
        n_inst += int(s.instance.max())
    assert set(range(8)) <= classes
    assert n_inst >= 24


def test_seed_sets_disjoint():
    val = set(synthetic.validation_seeds(200))
    assert min(val) == synthetic.VALIDATION_SEED_START
    train = {
        synthetic.training_seed(i, base) for base in (0, 1, 17) for i in range(0, 5_000_000, 997)
    }
    assert max(train) < synthetic.VALIDATION_SEED_START
    assert not (val & train)
