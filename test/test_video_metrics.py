"""STQ / AQ / SQ against deeplab2's numpy reference (vendored unchanged in test/reference/), and
CLEAR-MOT ID switches / fragmentations on hand-made sequences with known answers."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.evaluation.video import (
    IdSwitches,
    SegmentationTrackingQuality,
    evaluate_sequences,
)

TAX = Taxonomy.default()  # 8 classes, things 5 (person), 6 (car), 7 (bicycle), divisor 1000
DIV = TAX.label_divisor
PERSON, CAR, BIKE = TAX.thing_ids
ROAD = TAX.stuff_ids[0]
SHIFT = 16  # the reference's label_bit_shift


def _reference():
    path = Path(__file__).parent / "reference" / "segmentation_and_tracking_quality.py"
    spec = importlib.util.spec_from_file_location("deeplab2_stq_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


REF = _reference()


def to_reference(pan: np.ndarray) -> np.ndarray:
    """Our encoding (class * divisor + id, -1 void) -> the reference's ((class << 16) + id, void
    as the ignore label 255)."""
    pan = pan.astype(np.int64)
    sem = np.where(pan < 0, 255, pan // DIV)
    inst = np.where(pan < 0, 0, pan % DIV)
    return (sem << SHIFT) + inst


def reference_stq(sequences) -> dict:
    ref = REF.STQuality(TAX.num_classes, list(TAX.thing_ids), 255, SHIFT, 1 << 24)
    for seq_id, frames in sequences:
        for gt, pred in frames:
            ref.update_state(to_reference(gt), to_reference(pred), seq_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ref.result()


def ours(sequences):
    return evaluate_sequences(TAX, sequences)


def assert_parity(sequences):
    stq, _ = ours(sequences)
    ref = reference_stq(sequences)
    # the reference accumulates areas and divides in float32: agreement to ~1e-6 relative
    assert stq.aq == pytest.approx(float(ref["AQ"]), rel=1e-6, abs=1e-9)
    assert stq.sq == pytest.approx(float(ref["IoU"]), rel=1e-9, abs=1e-12)
    assert stq.stq == pytest.approx(float(ref["STQ"]), rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(stq.aq_per_seq, ref["AQ_per_seq"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stq.sq_per_seq, ref["IoU_per_seq"], rtol=1e-9)
    np.testing.assert_allclose(stq.stq_per_seq, ref["STQ_per_seq"], rtol=1e-6, atol=1e-9)
    return stq


# -- random sequences ---------------------------------------------------------------------------
def random_sequence(rng: np.random.Generator, n_frames: int, h: int = 24, w: int = 32):
    """Moving rectangles with GT track ids over stuff bands, some void and crowd; the prediction
    keeps, swaps, renumbers, drops, shifts or re-classes them."""
    n_obj = int(rng.integers(1, 6))
    cls = rng.choice(TAX.thing_ids, n_obj)
    pos = rng.integers(0, [h, w], (n_obj, 2)).astype(float)
    vel = rng.uniform(-2, 2, (n_obj, 2))
    size = rng.integers(2, 10, (n_obj, 2))
    perm = rng.permutation(n_obj) + 1
    frames = []
    for t in range(n_frames):
        gt = np.full((h, w), ROAD * DIV, np.int64)
        gt[: h // 3] = TAX.stuff_ids[-1] * DIV
        pred = gt.copy()
        if rng.random() < 0.3:
            perm = rng.permutation(n_obj) + 1 + int(rng.integers(0, 3))
        for k in range(n_obj):
            y, x = (pos[k] + vel[k] * t).astype(int)
            sl = (
                slice(max(0, y), max(0, y + size[k, 0])),
                slice(max(0, x), max(0, x + size[k, 1])),
            )
            gt[sl] = cls[k] * DIV + (0 if (k == 0 and rng.random() < 0.2) else k + 1)  # crowd
            r = rng.random()
            if r < 0.1:
                continue  # missed
            dy, dx = rng.integers(-1, 2, 2)
            psl = (
                slice(max(0, y + dy), max(0, y + dy + size[k, 0])),
                slice(max(0, x + dx), max(0, x + dx + size[k, 1])),
            )
            c = cls[k] if r > 0.15 else rng.choice(TAX.thing_ids)
            pred[psl] = c * DIV + int(perm[k])
        gt[rng.random((h, w)) < 0.03] = -1
        pred[rng.random((h, w)) < 0.02] = -1
        if rng.random() < 0.3:  # a false positive
            pred[-3:, -4:] = CAR * DIV + 40
        frames.append((gt, pred))
    return frames


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_match_reference(seed):
    rng = np.random.default_rng(seed)
    seqs = [(f"s{i}", random_sequence(rng, int(rng.integers(1, 12)))) for i in range(4)]
    stq = assert_parity(seqs)
    assert 0.0 < stq.aq < 1.0 and 0.0 < stq.sq < 1.0


def test_synthetic_sequence_against_itself_and_perturbed_matches_reference():
    from panoptic_ros.core.synthetic_video import generate_sequence, sequence_seeds

    seq = generate_sequence(sequence_seeds(1)[0], 8, 60, 80)
    gts = [f.panoptic for f in seq.frames]
    stq = assert_parity([(0, [(g, g) for g in gts])])
    assert (stq.stq, stq.aq, stq.sq) == (1.0, 1.0, 1.0)
    # per-frame ids (as an untracked node publishes): 1..N in an order that changes per frame
    per_frame = []
    for t, g in enumerate(gts):
        p = g.copy()
        ids = [i for i in np.unique(g) if i >= 0 and i % DIV]
        for k, old in enumerate(ids):
            p[g == old] = (old // DIV) * DIV + (k + t) % len(ids) + 1
        per_frame.append((g, p))
    assert assert_parity([(0, per_frame)]).aq < 1.0


# -- hand cases with known answers -------------------------------------------------------------
def box(frame: np.ndarray, y: int, x: int, value: int, size: int = 4) -> None:
    frame[y : y + size, x : x + size] = value


def two_objects(n: int, swap_at: int | None = None, pred_ids=(1, 2)):
    """GT: person 1 at the left, person 2 at the right, static, n frames. Prediction: the same
    masks with ids ``pred_ids``, swapped from frame ``swap_at`` on."""
    frames = []
    for t in range(n):
        gt = np.full((8, 16), ROAD * DIV, np.int64)
        box(gt, 2, 1, PERSON * DIV + 1)
        box(gt, 2, 9, PERSON * DIV + 2)
        a, b = pred_ids if swap_at is None or t < swap_at else pred_ids[::-1]
        pred = np.full((8, 16), ROAD * DIV, np.int64)
        box(pred, 2, 1, PERSON * DIV + a)
        box(pred, 2, 9, PERSON * DIV + b)
        frames.append((gt, pred))
    return frames


def test_perfect_tracking_is_one_and_no_switches():
    stq, ids = ours([(0, two_objects(6))])
    assert (stq.stq, stq.aq, stq.sq) == (1.0, 1.0, 1.0)
    assert (ids.id_switches, ids.fragmentations, ids.misses, ids.false_positives) == (0, 0, 0, 0)
    assert ids.gt_track_frames == 12 and ids.matches == 12 and ids.mota == 1.0


def test_other_id_values_are_fine():
    """Track ids need not equal GT ids: only consistency counts."""
    stq, ids = ours([(0, two_objects(6, pred_ids=(17, 3)))])
    assert stq.aq == 1.0 and ids.id_switches == 0


def test_one_swap():
    """Ids swap at frame 3 of 6: each GT track changes its matched id once -> 2 switches; each
    GT tube is half covered by each predicted tube (IoU 3a / (6a + 6a - 3a) = 1/3) -> AQ 1/3."""
    seqs = [(0, two_objects(6, swap_at=3))]
    stq, ids = ours(seqs)
    assert stq.aq == pytest.approx(1 / 3)
    assert stq.sq == 1.0
    assert stq.stq == pytest.approx(np.sqrt(1 / 3))
    assert ids.id_switches == 2 and ids.fragmentations == 0
    assert ids.id_switches_per_100 == pytest.approx(100 * 2 / 12)
    assert_parity(seqs)


def test_split_track_new_id():
    """One GT track, predicted as id 1 for 3 frames then id 5 for 3 frames: 1 switch, AQ 1/2."""
    frames = []
    for t in range(6):
        gt = np.full((8, 8), ROAD * DIV, np.int64)
        box(gt, 2, 2, CAR * DIV + 1)
        pred = np.full((8, 8), ROAD * DIV, np.int64)
        box(pred, 2, 2, CAR * DIV + (1 if t < 3 else 5))
        frames.append((gt, pred))
    stq, ids = ours([(0, frames)])
    assert stq.aq == pytest.approx(0.5)
    assert ids.id_switches == 1 and ids.fragmentations == 0
    assert_parity([(0, frames)])


def single_track(n: int, pred_id_at, gt_visible=lambda t: True):
    """One GT person (id 1); ``pred_id_at(t)`` is the predicted id at frame t (None = missed)."""
    frames = []
    for t in range(n):
        gt = np.full((8, 8), ROAD * DIV, np.int64)
        pred = gt.copy()
        if gt_visible(t):
            box(gt, 2, 2, PERSON * DIV + 1)
        p = pred_id_at(t)
        if p is not None:
            box(pred, 2, 2, PERSON * DIV + p)
        frames.append((gt, pred))
    return frames


def test_fragmentation_without_switch():
    """Missed in frame 2, then the same id again: 1 fragmentation, 0 switches, 1 miss."""
    _, ids = ours([(0, single_track(6, lambda t: None if t == 2 else 4))])
    assert (ids.id_switches, ids.fragmentations, ids.misses, ids.matches) == (0, 1, 1, 5)


def test_fragmentation_with_new_id_is_also_a_switch():
    _, ids = ours([(0, single_track(6, lambda t: None if t in (2, 3) else (4 if t < 2 else 9)))])
    assert (ids.id_switches, ids.fragmentations, ids.misses) == (1, 1, 2)


def test_fully_occluded_gap_is_neither_miss_nor_fragment():
    """The GT object is invisible in frames 2-3 (fully occluded) and not predicted there."""
    hidden = (2, 3)
    frames = single_track(6, lambda t: None if t in hidden else 4, lambda t: t not in hidden)
    _, ids = ours([(0, frames)])
    assert (ids.id_switches, ids.fragmentations, ids.misses, ids.gt_track_frames) == (0, 0, 0, 4)


def test_first_frames_missed_then_tracked_is_not_a_fragment():
    _, ids = ours([(0, single_track(5, lambda t: None if t < 2 else 4))])
    assert (ids.id_switches, ids.fragmentations, ids.misses) == (0, 0, 2)


def test_switch_counted_against_last_match_across_gaps():
    """1, miss, 1, 2, 2, 1: switches at 1->2 and 2->1 (the miss does not reset the last id)."""
    seq = [1, None, 1, 2, 2, 1]
    _, ids = ours([(0, single_track(6, lambda t: seq[t]))])
    assert ids.id_switches == 2 and ids.fragmentations == 1


def test_class_mismatch_and_low_iou_do_not_match():
    frames = []
    gt = np.full((8, 8), ROAD * DIV, np.int64)
    box(gt, 0, 0, PERSON * DIV + 1)  # 4x4 = 16 px
    wrong_class = gt.copy()
    wrong_class[gt == PERSON * DIV + 1] = CAR * DIV + 1
    half = np.full((8, 8), ROAD * DIV, np.int64)
    half[0:4, 0:4] = PERSON * DIV + 1  # start from the same box ...
    half[0:4, 2:4] = ROAD * DIV  # ... keep 8 of 16 px: IoU exactly 0.5 -> no match
    frames = [(gt, wrong_class), (gt, half)]
    _, ids = ours([(0, frames)])
    assert (ids.matches, ids.misses, ids.false_positives) == (0, 2, 2)


def test_sequences_are_independent():
    """The same ids in two sequences are different tracks (no switch across sequences)."""
    a = single_track(3, lambda t: 1)
    b = single_track(3, lambda t: 2)
    stq, ids = ours([("a", a), ("b", b)])
    assert ids.id_switches == 0 and stq.aq == 1.0 and stq.n_gt_tracks == 2 and stq.n_sequences == 2


def test_crowd_and_void_rules_match_reference():
    """GT thing pixels with instance 0 (crowd) are ignored for AQ on both sides; prediction VOID
    makes a VOID column (the reference adds a zero-IoU class to the SQ average)."""
    gt = np.full((8, 8), ROAD * DIV, np.int64)
    box(gt, 0, 0, PERSON * DIV + 0)  # crowd
    box(gt, 4, 4, PERSON * DIV + 1)
    pred = gt.copy()
    box(pred, 0, 0, PERSON * DIV + 7)
    pred[7, 0] = -1
    stq = assert_parity([(0, [(gt, pred)])])
    assert stq.aq == 1.0
    assert stq.sq < 1.0


def test_bad_input_is_named():
    m = SegmentationTrackingQuality(TAX)
    with pytest.raises(ValueError, match="ground truth is"):
        m.update(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="panoptic value"):
        m.update(np.full((2, 2), 99 * DIV), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ground truth is"):
        IdSwitches(TAX).update(np.zeros((2, 2)), np.zeros((3, 2)))
    # (class, id) pairs are packed into 64 bits: a divisor this large once overflowed them
    # (a perfect prediction ended in ZeroDivisionError)
    import dataclasses

    with pytest.raises(ValueError, match="int32 panoptic range"):
        SegmentationTrackingQuality(dataclasses.replace(TAX, label_divisor=1 << 30))
    # IoU > 0.5 is what makes a match unique; below it one GT segment could match two
    # predictions and be counted twice (silently, before this check)
    for bad in (0.3, 1.0):
        with pytest.raises(ValueError, match="min_iou must be in"):
            IdSwitches(TAX, min_iou=bad)


def test_oracle_ids_give_each_segment_its_gt_track_id():
    """oracle_ids: each predicted thing segment takes the id of the GT track it overlaps most,
    one segment per GT track; a leftover segment gets an id from the top of the range. GT tracks
    of different classes may share an instance id (person 1, car 1): they are two tracks (once
    taken as one, so the car got a leftover id and the oracle AQ fell below 1)."""
    from panoptic_ros.evaluation.video import oracle_ids

    frames = []
    for t in range(3):
        gt = np.full((8, 24), ROAD * DIV, np.int64)
        box(gt, 2, 1, PERSON * DIV + 1)
        box(gt, 2, 9, CAR * DIV + 1)
        pred = np.full((8, 24), ROAD * DIV, np.int64)
        box(pred, 2, 1, PERSON * DIV + 5 + t)  # per-frame ids, as an untracked node gives
        box(pred, 2, 9, CAR * DIV + 9 - t)
        box(pred, 2, 18, CAR * DIV + 20)  # a false positive: no GT track under it
        frames.append((gt, oracle_ids(gt, pred, TAX)))
    for gt, best in frames:
        assert (best[gt == PERSON * DIV + 1] == PERSON * DIV + 1).all()
        assert (best[gt == CAR * DIV + 1] == CAR * DIV + 1).all()
        assert (best[2:6, 18:22] == CAR * DIV + DIV - 1).all()
    stq, ids = ours([(0, frames)])
    assert stq.aq == 1.0 and ids.id_switches == 0
