"""Synthetic video sequences (core/synthetic_video.py): determinism, held-out seeds, exact identities."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core import synthetic
from panoptic_ros.core.synthetic_video import (
    SEQUENCE_SEED_START,
    generate_sequence,
    sequence_seeds,
)
from panoptic_ros.core.taxonomy import Taxonomy

TAX = Taxonomy.default()


@pytest.fixture(scope="module")
def seqs():
    return [generate_sequence(s, 24) for s in sequence_seeds(4)]


def test_deterministic_by_seed():
    a, b = (
        generate_sequence(SEQUENCE_SEED_START + 7, 6),
        generate_sequence(SEQUENCE_SEED_START + 7, 6),
    )
    for fa, fb in zip(a.frames, b.frames):
        for name in ("image", "semantic", "instance", "panoptic"):
            assert np.array_equal(getattr(fa, name), getattr(fb, name))
    c = generate_sequence(SEQUENCE_SEED_START + 8, 6)
    assert not np.array_equal(a.frames[0].image, c.frames[0].image)


def test_seeds_are_held_out():
    seeds = sequence_seeds(1000)
    assert seeds[0] == SEQUENCE_SEED_START == 20_000_000
    assert min(seeds) > max(synthetic.validation_seeds(1000))
    assert all(
        synthetic.training_seed(i, b) < SEQUENCE_SEED_START for i in (0, 10**9) for b in (0, 7)
    )


def test_track_ids_constant_and_consistent(seqs):
    for seq in seqs:
        cls_of = {m.track_id: m.class_id for m in seq.movers}
        assert sorted(cls_of) == list(range(1, len(seq.movers) + 1))
        for f in seq.frames:
            assert f.instance.dtype == np.uint16 and f.panoptic.dtype == np.int32
            ids = set(np.unique(f.instance).tolist()) - {0}
            assert ids <= set(cls_of)
            for tid in ids:
                m = f.instance == tid
                assert (f.semantic[m] == cls_of[tid]).all()
                assert (f.panoptic[m] == cls_of[tid] * TAX.label_divisor + tid).all()
            stuff = f.instance == 0
            assert not np.isin(f.semantic[stuff], TAX.thing_ids).any()  # things carry an id
            assert ((f.semantic == 255) == (f.panoptic == -1)).all()


def test_pixels_move_by_velocity(seqs):
    """An object's full mask at t+1 is its mask at t shifted by (vx, vy), away from the border."""
    checked = 0
    for seq in seqs:
        h, w = seq.frames[0].semantic.shape
        for m in seq.movers:
            for t in (0, 7, 15):
                a, b = seq.full_mask(m.track_id, t), seq.full_mask(m.track_id, t + 1)
                shifted = np.zeros_like(a)
                ys, xs = np.nonzero(a)
                ys, xs = ys + m.vy, xs + m.vx
                ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
                shifted[ys[ok], xs[ok]] = True
                inner = np.zeros_like(a)
                pad = 2 + max(abs(m.vx), abs(m.vy))
                inner[pad:-pad, pad:-pad] = True
                assert np.array_equal(shifted & inner, b & inner), (seq.seed, m.track_id, t)
                checked += int((a & inner).any())
    assert checked > 10


def test_occluded_pixels_belong_to_the_front_object(seqs):
    """Visible pixels of each object = its full mask minus the masks of objects drawn after it
    (nearer), unless it became VOID for being too small."""
    occlusions = 0
    for seq in seqs:
        order = sorted(seq.movers, key=lambda m: (m.z, m.track_id))
        for t in (0, 11, 23):
            f = seq.frames[t]
            front = np.zeros(f.semantic.shape, bool)
            for m in reversed(order):  # nearest first
                full = seq.full_mask(m.track_id, t)
                expect = full & ~front
                got = f.instance == m.track_id
                if got.any():
                    assert np.array_equal(got, expect), (seq.seed, m.track_id, t)
                else:  # off screen, fully hidden, or voided as a sliver
                    assert (f.semantic[expect] == 255).all()
                occlusions += int((full & front).any())
                front |= full
    assert occlusions > 0


def test_objects_enter_and_leave():
    entered = left = 0
    for seq in (generate_sequence(s, 30) for s in sequence_seeds(6)):
        first = set(np.unique(seq.frames[0].instance).tolist())
        last = set(np.unique(seq.frames[-1].instance).tolist())
        entered += len(last - first)
        left += len(first - last)
    assert entered > 0 and left > 0


def test_first_frame_looks_like_a_training_scene():
    """Same classes and value ranges as single scenes (the default model was trained on those)."""
    seq = generate_sequence(SEQUENCE_SEED_START, 1)
    f = seq.frames[0]
    assert f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8
    assert set(np.unique(f.semantic).tolist()) <= {c.id for c in TAX.classes} | {255}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_frames"):
        generate_sequence(SEQUENCE_SEED_START, 0)
    with pytest.raises(ValueError, match="16x16"):
        generate_sequence(SEQUENCE_SEED_START, 2, 8, 8)
