"""core/tracking.py on hand-made frames (ROS-free, numpy only): association, life cycle, id rules.

Frames are painted rectangles; the test knows which drawn object each pixel belongs to, so
every assertion is about identity: "the object that moved right still has the id it had".
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from panoptic_ros.core.tracking import MAX_TRACK_ID, Tracker, TrackerConfig, config_problems
from panoptic_ros.core.types import Instance, PanopticResult

H, W = 60, 200
DIV = 1000


def frame(objs, h=H, w=W, div=DIV, shuffle_seed=None) -> tuple[PanopticResult, dict[str, int]]:
    """objs: [(name, class_id, x0, y0, x1, y1), ...] painted in order (later ones on top).

    Returns the result as the segmenter would give it (ids 1..N in list order, or shuffled)
    and name -> per-frame id of each object that is visible."""
    inst = np.zeros((h, w), np.uint16)
    sem = np.zeros((h, w), np.uint8)
    tmp = np.zeros((h, w), np.int32)
    for k, (_, c, x0, y0, x1, y1) in enumerate(objs, 1):
        tmp[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = k
    order = list(range(len(objs)))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    instances, names = [], {}
    for k in order:
        name, c = objs[k][0], objs[k][1]
        m = tmp == k + 1
        ys, xs = np.nonzero(m)
        if xs.size == 0:
            continue
        iid = len(instances) + 1
        inst[m], sem[m] = iid, c
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        instances.append(
            Instance(iid, c, 0.9, bbox, int(m.sum()), (float(xs.mean()), float(ys.mean())))
        )
        names[name] = iid
    pan = np.where(inst > 0, sem.astype(np.int32) * div + inst, sem.astype(np.int32) * div)
    return PanopticResult(sem, inst, pan.astype(np.int32), tuple(instances)), names


def run(tracker, seq, stamps=None):
    """Feed ``seq`` (lists of objects); returns per frame name -> track id, and the outputs."""
    ids, outs = [], []
    for i, objs in enumerate(seq):
        res, names = frame(objs)
        out = tracker.update(res, None if stamps is None else stamps[i])
        check_output(res, out, tracker.label_divisor)
        ids.append({n: out.instances[names[n] - 1].id for n in names})
        outs.append(out)
    return ids, outs


def check_output(res: PanopticResult, out: PanopticResult, div: int) -> None:
    """The contract of every tracked result: same pixels, ids relabelled consistently."""
    assert out is not res and out.instance.dtype == np.uint16 and out.panoptic.dtype == np.int32
    assert [d.bbox for d in out.instances] == [d.bbox for d in res.instances]
    ids = [d.id for d in out.instances]
    assert len(set(ids)) == len(ids) and all(1 <= i <= MAX_TRACK_ID and i % div for i in ids)
    assert len({i % div for i in ids}) == len(ids)
    for d_in, d_out in zip(res.instances, out.instances):
        m = res.instance == d_in.id
        assert np.array_equal(out.instance == d_out.id, m)
        assert (out.panoptic[m] == d_out.class_id * div + d_out.id % div).all()
    stuff = res.instance == 0
    assert (out.instance[stuff] == 0).all() and np.array_equal(
        out.panoptic[stuff], res.panoptic[stuff]
    )
    assert "track" in out.timings


def box(name, c, x, y, w=20, h=20):
    return (name, c, int(x), int(y), int(x) + w, int(y) + h)


def test_object_moving_right_keeps_its_id_thanks_to_motion():
    # 20 px wide; 10 px in its first step (no velocity known yet: IoU 10/30), then 18 px per
    # frame: without prediction consecutive boxes overlap by 2/38 < min_iou
    seq = [[box("car", 1, 10 + 18 * i - (8 if i else 0), 20)] for i in range(10)]
    ids, outs = run(Tracker(TrackerConfig(), DIV), seq)
    assert {f["car"] for f in ids} == {1}
    assert [d.age for o in outs for d in o.instances] == list(range(10))
    assert [d.hits for o in outs for d in o.instances] == list(range(1, 11))
    still, _ = run(Tracker(TrackerConfig(motion=False, min_iou=0.2), DIV), seq)
    assert len({f["car"] for f in still}) > 1  # the prediction is what keeps it


@pytest.mark.parametrize(
    "assignment", ["greedy", "hungarian"] if importlib.util.find_spec("scipy") else ["greedy"]
)
@pytest.mark.parametrize("similarity", ["mask", "box"])
@pytest.mark.parametrize("occlusion_ratio", [0.0, 0.7])
def test_two_objects_crossing_keep_their_ids(assignment, similarity, occlusion_ratio):
    """Same class, same row, opposite directions; b passes in front of a (a fully hidden for
    a frame), and the ids follow the motion, not the position."""
    seq = []
    for i in range(20):
        seq.append([box("a", 1, 10 + 8 * i, 20, w=24), box("b", 1, 170 - 8 * i, 20, w=24)])
    cfg = TrackerConfig(
        assignment=assignment, similarity=similarity, occlusion_ratio=occlusion_ratio
    )
    ids, _ = run(Tracker(cfg, DIV), seq)
    assert any("a" not in f for f in ids), "the case must include a fully hidden frame"
    assert {f["a"] for f in ids if "a" in f} == {1}
    assert {f["b"] for f in ids} == {2}


def test_shuffled_instance_order_does_not_matter():
    seq = [
        [box(f"o{k}", 1 + k % 2, 5 + 30 * k + 3 * i, 5 + 4 * k) for k in range(6)] for i in range(8)
    ]
    tr = Tracker(TrackerConfig(), DIV)
    for i, objs in enumerate(seq):
        res, names = frame(objs, shuffle_seed=i)
        out = tr.update(res)
        check_output(res, out, DIV)
        got = {n: out.instances[names[n] - 1].id for n in names}
        if i == 0:
            first = got
        assert got == first


@pytest.mark.parametrize("gap,same", [(3, True), (4, False)])
def test_leaving_and_reentering_within_max_age_keeps_the_id(gap, same):
    """max_age=3: absent for 3 frames -> same id on return; absent for 4 -> ended, new id."""
    present = [box("p", 2, 50, 20)]
    seq = [present] * 4 + [[]] * gap + [present] * 2
    tr = Tracker(TrackerConfig(max_age=3), DIV)
    ids, outs = run(tr, seq)
    before, after = ids[0]["p"], ids[-1]["p"]
    assert (before == after) is same
    last = outs[-1].instances[0]
    if same:  # age counts every frame since birth, hits only the detected ones
        assert (last.age, last.hits) == (len(seq) - 1, 6)
    else:
        assert (last.age, last.hits) == (1, 2)


#: frames a node processed out of 0..17 (the others dropped upstream): gaps of 1, 2 and 3 frames
KEPT = [0, 1, 2, 5, 6, 7, 9, 12, 13, 16, 17]
PERIOD_NS = 33_333_333
#: camera jitter on the stamps (ns), one per kept frame
JITTER = [0, 400_000, -700_000, 900_000, -200_000, 0, 600_000, -900_000, 300_000, 0, -500_000]


def dropped_run(stamps):
    """An object moving 10 px per camera frame (16 px wide), seen only in the KEPT frames."""
    seq = [[box("car", 1, 10 + 10 * t, 20, w=16)] for t in KEPT]
    return run(Tracker(TrackerConfig(), DIV), seq, stamps)


def test_dropped_frames_keep_the_id_with_stamp_time_motion():
    """Per stamp: after a 3-frame gap the prediction is 30 px on, where the object is. Per
    processed frame (no stamps) it is 10 px on: 20 px behind a 16 px object, no overlap."""
    stamps = [t * PERIOD_NS + j for t, j in zip(KEPT, JITTER)]
    timed, outs = dropped_run(stamps)
    assert {f["car"] for f in timed} == {1}
    assert outs[-1].instances[0].hits == len(KEPT)
    per_frame, _ = dropped_run(None)
    assert len({f["car"] for f in per_frame}) > 1  # without stamps the gaps break the track


def test_equal_stamps_and_no_stamps_are_per_frame_motion():
    """A stamp equal to the previous one (a driver that stamps 0, a duplicate) counts one frame
    period, as a missing stamp does: the same output as without stamps."""
    _, none = dropped_run(None)
    _, equal = dropped_run([0] * len(KEPT))
    for a, b in zip(none, equal):
        assert a.instances == b.instances and np.array_equal(a.panoptic, b.panoptic)


def test_even_stamps_give_exactly_the_per_frame_result():
    """Evenly stamped frames: the clock counts whole periods, so the arithmetic (velocities,
    rounding of shifts) is the per-frame one, bit for bit; here an object that speeds up and
    a second one crossing it, so the velocities and shifts are not trivial."""
    seq = [
        [box("a", 1, 5 + i * (i + 3) // 2, 20, w=24), box("b", 1, 170 - 7 * i, 24, w=24)]
        for i in range(16)
    ]
    _, plain = run(Tracker(TrackerConfig(), DIV), seq)
    _, even = run(Tracker(TrackerConfig(), DIV), seq, [10**12 + i * PERIOD_NS for i in range(16)])
    for a, b in zip(plain, even):
        assert a.instances == b.instances and np.array_equal(a.instance, b.instance)


def test_frames_without_stamps_between_stamped_ones_count_one_period():
    """A missing stamp mid-stream is one period of motion, and the next stamped frame measures
    its delta from the last stamp it has: the object (10 px per period) keeps its id."""
    seq = [[box("car", 1, 10 + 10 * t, 20, w=16)] for t in range(6)]
    stamps = [0, PERIOD_NS, None, 3 * PERIOD_NS, 4 * PERIOD_NS, 5 * PERIOD_NS]
    ids, _ = run(Tracker(TrackerConfig(), DIV), seq, stamps)
    assert {f["car"] for f in ids} == {1}


def test_class_change_does_not_match():
    seq = [[box("x", 1, 50, 20)], [box("x", 2, 50, 20)]]
    ids, _ = run(Tracker(TrackerConfig(), DIV), seq)
    assert ids[0]["x"] != ids[1]["x"]


def test_stamps_going_backwards_reset_and_equal_stamps_do_not():
    tr = Tracker(TrackerConfig(), DIV)
    seq = [[box("a", 1, 10 + 5 * i, 20)] for i in range(4)] + [[box("b", 1, 150, 20)]]
    ids, _ = run(tr, seq, stamps=[100, 200, 200, 300, 400])
    assert [f.get("a") for f in ids[:4]] == [1, 1, 1, 1] and ids[4]["b"] == 2
    # a looped bag: the first stamp again -> a new sequence, ids from 1
    ids2, _ = run(tr, [[box("b", 1, 150, 20)], [box("c", 1, 100, 20)]], stamps=[100, 200])
    assert tr.stamp_resets == 1 and ids2[0]["b"] == 1 and ids2[1]["c"] == 2
    tr.reset()
    assert tr.live_ids == () and run(tr, [[box("z", 1, 0, 0)]])[0][0]["z"] == 1


def test_image_size_change_resets():
    tr = Tracker(TrackerConfig(), DIV)
    res, _ = frame([box("a", 1, 10, 10)])
    assert tr.update(res).instances[0].id == 1
    res2, _ = frame([box("a", 1, 10, 10), box("b", 1, 50, 10)], h=40, w=80)
    assert [d.id for d in tr.update(res2).instances] == [1, 2]


def test_ids_skip_multiples_and_live_residues_of_label_divisor():
    """label_divisor 10: ids 10, 20, ... never; an id whose last digit a live track has, never."""
    tr = Tracker(TrackerConfig(max_age=100), 10)
    # 5 objects that stay; then a stream of one-frame objects of another class
    stay = [box(f"s{k}", 1, 5 + 35 * k, 5, w=10, h=10) for k in range(5)]
    seen = []
    for i in range(12):
        objs = stay + [box("new", 2 + i % 2, 5 + 14 * i, 40, w=10, h=10)]
        res, names = frame(objs, div=10)
        out = tr.update(res)
        check_output(res, out, 10)
        seen.append(out.instances[names["new"] - 1].id)
    assert [d.id for d in out.instances[:5]] == [1, 2, 3, 4, 5]
    # 6..9 free at first; 10 skipped (multiple); 11..15 share residues 1..5 with live tracks;
    # 16..19, then 26.. (20 is a multiple, 21..25 collide) ... every new track stays alive
    # (max_age 100), so its residue is taken too and the 9 residues run out after 4 more
    assert seen[:4] == [6, 7, 8, 9]
    assert all(i % 10 and i % 10 not in (1, 2, 3, 4, 5) for i in seen)
    assert len(set(x % 10 for x in tr.live_ids)) == len(tr.live_ids) <= 9


def test_counter_wraps_at_65535_and_skips_live_ids():
    tr = Tracker(TrackerConfig(max_age=100), 1000)
    res, _ = frame([box("a", 1, 10, 10)])
    assert tr.update(res).instances[0].id == 1  # track 1 stays live
    tr._next_id = 65534  # jump to the end of the counter (a long run)
    seq_ids = []
    for i in range(3):
        res, names = frame([box("a", 1, 10, 10), box("n", 2 + i, 60 + 30 * i, 10)])
        out = tr.update(res)
        check_output(res, out, 1000)
        seq_ids.append(out.instances[names["n"] - 1].id)
    # 65534 (residue 534), 65535 (535), wrap: 1 is live (and 1000 a multiple) -> 2
    assert seq_ids == [65534, 65535, 2]


def test_large_label_divisor_uses_the_id_itself():
    tr = Tracker(TrackerConfig(), 1 << 20)
    res, _ = frame([box("a", 3, 10, 10)], div=1 << 20)
    out = tr.update(res)
    assert out.instances[0].id == 1 and out.panoptic[10, 10] == 3 * (1 << 20) + 1


def test_residues_exhausted_end_the_longest_lost_track_then_refuse():
    tr = Tracker(TrackerConfig(max_age=100), 4)  # residues 1, 2, 3 only
    for i in range(3):  # three tracks, each seen once, then lost
        res, _ = frame([box("o", 1 + i, 10 + 40 * i, 10)], div=4)
        tr.update(res)
    assert sorted(tr.live_ids) == [1, 2, 3]
    res, _ = frame([box("n", 9, 150, 10)], div=4)
    out = tr.update(res)  # track 1 (lost longest) makes room
    assert out.instances[0].id == 5 and sorted(tr.live_ids) == [2, 3, 5]
    res, _ = frame([box(f"m{k}", 5, 10 + 40 * k, 30, w=10, h=10) for k in range(4)], div=4)
    with pytest.raises(ValueError, match="label_divisor 4"):
        tr.update(res)


def test_disabled_returns_the_input_and_never_touches_it():
    res, _ = frame([box("a", 1, 10, 10), box("b", 2, 60, 10)])
    assert Tracker(TrackerConfig(enabled=False), DIV).update(res, 5) is res
    before = (res.instance.copy(), res.panoptic.copy(), res.semantic.copy(), res.instances)
    tr = Tracker(TrackerConfig(), DIV)
    tr.update(res)
    shifted, _ = frame([box("b", 2, 62, 10), box("a", 1, 12, 10)])
    out = tr.update(shifted)
    assert [d.id for d in out.instances] == [2, 1]
    assert np.array_equal(before[0], res.instance) and np.array_equal(before[1], res.panoptic)
    assert np.array_equal(before[2], res.semantic) and before[3] == res.instances


def test_toggling_enabled_resets_other_changes_apply_next_frame():
    tr = Tracker(TrackerConfig(), DIV)
    run(tr, [[box("a", 1, 10, 10)], [box("b", 1, 100, 10)]])
    assert sorted(tr.live_ids) == [1, 2]
    tr.config = TrackerConfig(max_age=0)
    assert sorted(tr.live_ids) == [1, 2]
    run(tr, [[box("b", 1, 100, 10)]])
    assert tr.live_ids == (2,)  # a (unseen for 2 frames) ended under the new max_age
    tr.config = TrackerConfig(enabled=False)
    assert tr.live_ids == ()


def test_config_rejects_bad_values_with_reasons():
    for kw, fragment in [
        ({"max_age": -1}, "max_age"),
        ({"max_age": 1.5}, "max_age"),
        ({"min_iou": 0.0}, "min_iou"),
        ({"min_iou": 1.5}, "min_iou"),
        ({"assignment": "auction"}, "assignment"),
        ({"similarity": "color"}, "similarity"),
        ({"velocity_smoothing": 0.0}, "velocity_smoothing"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            TrackerConfig(**kw)
    assert config_problems(TrackerConfig()) == []
    with pytest.raises(ValueError, match="label_divisor"):
        Tracker(TrackerConfig(), 1)


def test_empty_frames_and_stuff_only():
    tr = Tracker(TrackerConfig(), DIV)
    res, _ = frame([])
    out = tr.update(res)
    assert out.instances == () and np.array_equal(out.panoptic, res.panoptic)
    assert out.instance.dtype == np.uint16 and not out.instance.any()


def _with(res: PanopticResult, instances, instance=None) -> PanopticResult:
    """``res`` with other instance records (and instance image): a family's inconsistent output."""
    inst = res.instance if instance is None else instance
    return PanopticResult(res.semantic, inst, res.panoptic, tuple(instances))


def _edit(d: Instance, **kw) -> Instance:
    import dataclasses

    return dataclasses.replace(d, **kw)


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("id_not_listed", "outside the listed instances"),  # pixels of an id not in instances
        ("bbox_too_small", "outside the listed instances"),  # part of the mask outside its bbox
        ("bbox_negative", "bbox"),  # would slice from the far edge
        ("bbox_past_edge", "bbox"),
        ("bbox_float", "bbox"),
        ("id_zero", "id 0"),
        ("id_twice", "listed twice"),
        ("shape_mismatch", "same 2-D size"),
        ("too_many", "label_divisor"),
    ],
)
def test_inconsistent_results_are_refused_and_the_tracks_survive(case, fragment):
    """Each of these once went through silently (stale per-frame ids left in the instance image
    next to track ids, so ``instance == int(det.id)`` picked up another object's pixels; wrong
    regions relabelled) or failed deep inside numpy. Now: a ValueError naming the problem,
    raised before anything changes, so the next good frame keeps its ids."""
    tr = Tracker(TrackerConfig(), DIV)
    objs = [box("a", 1, 60, 10), box("b", 1, 120, 10)]
    good, _ = frame(objs)
    assert [d.id for d in tr.update(good).instances] == [1, 2]
    # next frame: "b" is now the segmenter's id 1 and "a" its id 2
    res, names = frame(objs[::-1])
    a, b = res.instances[names["a"] - 1], res.instances[names["b"] - 1]
    x0, y0, x1, y1 = b.bbox
    bad = {
        "id_not_listed": lambda: _with(res, [a]),
        "bbox_too_small": lambda: _with(res, [a, _edit(b, bbox=(x0, y0, x1 - 5, y1))]),
        "bbox_negative": lambda: _with(res, [a, _edit(b, bbox=(-5, y0, x1, y1))]),
        "bbox_past_edge": lambda: _with(res, [a, _edit(b, bbox=(x0, y0, W + 5, y1))]),
        "bbox_float": lambda: _with(res, [a, _edit(b, bbox=(float(x0), y0, x1, y1))]),
        "id_zero": lambda: _with(res, [a, _edit(b, id=0)]),
        "id_twice": lambda: _with(res, [a, b, b]),
        "shape_mismatch": lambda: _with(res, [a, b], res.instance[:, :100]),
        "too_many": lambda: _with(res, [a] + [_edit(b, id=k) for k in range(2, DIV + 1)]),
    }[case]()
    with pytest.raises(ValueError, match=fragment):
        tr.update(bad, 5)
    out = tr.update(res, 5)  # the refused frame changed nothing (not even the stamp)
    check_output(res, out, DIV)
    assert out.instances[names["a"] - 1].id == 1 and out.instances[names["b"] - 1].id == 2


def test_the_track_id_mask_never_picks_up_another_objects_pixels():
    """The contract a consumer relies on, over a long shuffled run: for every detection,
    ``instance == id`` is exactly its own pixels, and no pixel holds an id without a detection."""
    rng = np.random.default_rng(3)
    tr = Tracker(TrackerConfig(max_age=2), 10)
    for i in range(60):
        objs = [
            box(f"o{k}", 1 + k % 3, int(rng.integers(0, W - 20)), int(rng.integers(0, H - 20)))
            for k in range(int(rng.integers(0, 7)))
        ]
        res, _ = frame(objs, div=10, shuffle_seed=i)
        out = tr.update(res)
        check_output(res, out, 10)
        listed = {d.id for d in out.instances}
        assert set(np.unique(out.instance).tolist()) - {0} == listed


def test_instances_without_pixels_do_not_break_tracking():
    """A zero-area record (empty mask, or an empty bbox) becomes a track that never matches by
    mask; it must not crash, take pixels, or steal the real object's id."""
    tr = Tracker(TrackerConfig(), DIV)
    for i in range(4):
        res, _ = frame([box("a", 1, 10 + 3 * i, 10)])
        ghosts = [Instance(7, 1, 0.5, (50, 10, 70, 30), 0, (60.0, 20.0))]
        ghosts.append(Instance(8, 1, 0.5, (90, 10, 90, 30), 0, (90.0, 20.0)))
        res = _with(res, [res.instances[0], *ghosts])
        out = tr.update(res)
        check_output(res, out, DIV)
        assert out.instances[0].id == 1
        assert not (out.instance == out.instances[1].id).any()


def test_more_live_tracks_than_ids_end_the_longest_lost(monkeypatch):
    """With a label_divisor above 65535 the id itself is the limit: once every id is held by a
    live track, a new object ends the track lost longest and a frame with more objects than ids
    is refused naming both limits (65535 lowered to 8 here, so it runs in milliseconds)."""
    import panoptic_ros.core.tracking as tracking

    monkeypatch.setattr(tracking, "MAX_TRACK_ID", 8)
    div = 1 << 20
    tr = Tracker(TrackerConfig(max_age=100), div)
    got = []
    for i in range(12):  # one new object per frame, each then lost (max_age keeps it alive)
        res, _ = frame([box("o", 1 + i, 5 + 15 * i, 10, w=10, h=10)], div=div)
        out = tr.update(res)
        got.append(out.instances[0].id)
        assert len(tr.live_ids) <= 8
    assert got == [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4]
    many = [box(f"m{k}", 50, 5 + 20 * k, 30, w=10, h=10) for k in range(9)]
    with pytest.raises(ValueError, match=r"at most 8 \(label_divisor 1048576, ids 1..8\)"):
        tr.update(frame(many, div=div)[0])
    res, _ = frame(many[:8], div=div)
    out = tr.update(res)
    assert sorted(d.id for d in out.instances) == list(range(1, 9))
    assert np.array_equal(np.unique(out.instance)[1:], np.arange(1, 9))
