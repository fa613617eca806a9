"""PQ / SQ / RQ: hand-computed cases and agreement with hotcoco (panopticapi semantics)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pq_random import COCO_CATEGORIES, random_gt, random_pairs, write_id_png, write_random_coco_sets

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.evaluation.coco_panoptic import (
    CocoPanopticError,
    categories_from_taxonomy,
    match_categories,
    open_coco_panoptic,
    panoptic_to_segments,
    pq_compute,
    read_png_ids,
    remap_classes,
    segments_to_annotation,
    segments_to_panoptic,
    write_coco_panoptic,
)
from panoptic_ros.evaluation.metrics import PanopticQuality, PQReport, format_report

TAX = Taxonomy.default()
D = TAX.label_divisor
ROAD, SIDEWALK, PERSON, CAR = 0, 1, 5, 6


def pq_of(pairs, taxonomy=TAX) -> PQReport:
    m = PanopticQuality(taxonomy)
    for pred, gt in pairs:
        m.update(pred, gt)
    return m.compute()


# -- hand-computed cases ---------------------------------------------------------------------
def test_perfect_prediction_is_one():
    rng = np.random.default_rng(0)
    pairs = [(g, g) for g in (random_gt(rng, TAX, 30, 40) for _ in range(5))]
    r = pq_of(pairs)
    assert (r.pq, r.sq, r.rq) == (1.0, 1.0, 1.0)
    assert r.n_images == 5
    assert r.summary_line() == "PQ=1.000000 SQ=1.000000 RQ=1.000000"


def test_one_false_positive():
    gt = np.full((10, 10), ROAD * D, np.int32)
    pred = gt.copy()
    pred[:2, :2] = PERSON * D + 1  # 4 px person not in gt
    r = pq_of([(pred, gt)])
    assert r.per_class["road"] == pytest.approx((0.96, 0.96, 1.0, 1, 0, 0))
    assert r.per_class["person"] == (0.0, 0.0, 0.0, 0, 1, 0)
    assert (
        r.pq == pytest.approx(0.48) and r.sq == pytest.approx(0.48) and r.rq == pytest.approx(0.5)
    )
    assert r.pq_stuff == pytest.approx(0.96) and r.pq_thing == 0.0
    assert (r.n_classes, r.n_thing_classes, r.n_stuff_classes) == (2, 1, 1)


def test_iou_exactly_half_is_not_a_match():
    gt = np.array([[CAR * D + 1] * 4 + [ROAD * D] * 4], np.int32)
    pred = np.array([[CAR * D + 1] * 2 + [ROAD * D] * 6], np.int32)  # car IoU = 2/4
    r = pq_of([(pred, gt)])
    assert r.per_class["car"] == (0.0, 0.0, 0.0, 0, 1, 1)
    assert r.per_class["road"][3:] == (1, 0, 0)
    assert r.per_class["road"][0] == pytest.approx(4 / 6)
    # one more pixel makes it a match: IoU 3/4
    pred[0, 2] = CAR * D + 1
    r = pq_of([(pred, gt)])
    assert r.per_class["car"] == pytest.approx((0.75, 0.75, 1.0, 1, 0, 0))


def test_void_excluded_from_union():
    gt = np.array([[CAR * D + 1] * 4 + [-1] * 4], np.int32)
    pred = np.full((1, 8), CAR * D + 1, np.int32)  # half of the prediction on void
    r = pq_of([(pred, gt)])
    assert r.per_class["car"] == (1.0, 1.0, 1.0, 1, 0, 0)


def test_mostly_void_prediction_is_not_a_false_positive():
    gt = np.array([[ROAD * D] * 4 + [-1] * 4], np.int32)
    pred = np.array([[ROAD * D] * 4 + [PERSON * D + 1] * 4], np.int32)  # person fully on void
    assert pq_of([(pred, gt)]).per_class["person"][3:] == (0, 0, 0)
    pred[0, 1] = PERSON * D + 1  # 4 of 5 px on void: still ignored
    r = pq_of([(pred, gt)])
    assert r.per_class["person"][3:] == (0, 0, 0)
    # exactly half on void counts as FP (panopticapi: ignored only when > 0.5)
    pred = np.array([[ROAD * D] * 2 + [PERSON * D + 1] * 4 + [-1] * 2], np.int32)
    assert pq_of([(pred, gt)]).per_class["person"][3:] == (0, 1, 0)


def test_distinct_ids_are_distinct_segments():
    # thing with instance 0 and instance 1 of the same class: two segments
    gt = np.array([[CAR * D] * 4 + [CAR * D + 1] * 4], np.int32)
    pred = np.full((1, 8), CAR * D + 7, np.int32)  # one segment covering both: IoU 0.5 with each
    assert pq_of([(pred, gt)]).per_class["car"][3:] == (0, 1, 2)
    assert pq_of([(gt, gt)]).per_class["car"][3:] == (2, 0, 0)


def test_classes_averaged_only_when_present_and_report_table():
    gt = np.full((4, 4), SIDEWALK * D, np.int32)
    r = pq_of([(gt, gt)])
    assert r.n_classes == 1 and r.pq == 1.0 and r.pq_thing == 0.0 and r.n_thing_classes == 0
    table = format_report(r, TAX)
    assert "sidewalk" in table and "All" in table and "Things" in table


def test_bad_inputs():
    m = PanopticQuality(TAX)
    with pytest.raises(ValueError, match="shape"):
        m.update(np.zeros((2, 3), np.int32), np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match="class 8"):
        m.update(np.full((2, 2), 8 * D, np.int32), np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="negative"):
        m.update(np.full((2, 2), -2, np.int32), np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="integer"):
        m.update(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int32))
    assert m.n_images == 0


def test_sparse_histogram_path_agrees_with_dense(monkeypatch):
    import panoptic_ros.evaluation.metrics as metrics

    pairs = random_pairs(7, 20, TAX)
    dense = pq_of(pairs)
    monkeypatch.setattr(metrics, "_DENSE_LIMIT", 0)
    sparse = pq_of(pairs)
    assert dense == sparse


# -- COCO panoptic format ------------------------------------------------------------------------
def test_coco_roundtrip(tmp_path):
    pairs = random_pairs(11, 6, TAX)
    gts = [g for _, g in pairs]
    data = write_coco_panoptic(
        tmp_path / "gt.json", tmp_path / "gt", [(f"im{i}", g) for i, g in enumerate(gts)], TAX
    )
    assert [c["id"] for c in data["categories"]] == [c.id + 1 for c in TAX.classes]
    seg = data["annotations"][0]["segments_info"][0]
    assert set(seg) == {"id", "category_id", "area", "bbox", "iscrowd"}
    ds = open_coco_panoptic(tmp_path / "gt.json", taxonomy=TAX)
    assert len(ds) == 6
    for (image_id, pan), g in zip(ds, gts):
        np.testing.assert_array_equal(pan, g)
    # taxonomy rebuilt from the JSON's categories matches ours
    assert open_coco_panoptic(tmp_path / "gt.json").taxonomy.classes == TAX.classes


def test_coco_segments_bbox_area():
    pan = np.full((5, 6), -1, np.int32)
    pan[1:3, 2:5] = CAR * D + 3
    ids, segs = panoptic_to_segments(pan, TAX)
    assert segs == [
        {"id": CAR * D + 4, "category_id": CAR + 1, "area": 6, "bbox": [2, 1, 3, 2], "iscrowd": 0}
    ]
    assert ids[0, 0] == 0


def test_coco_foreign_ids_and_crowd():
    ids = np.array([[0, 7, 7, 9, 11, 12]])
    segs = [
        {"id": 7, "category_id": CAR + 1, "iscrowd": 0},
        {"id": 9, "category_id": CAR + 1, "iscrowd": 0, "area": 5},
        {"id": 11, "category_id": ROAD + 1, "iscrowd": 0},
        {"id": 12, "category_id": PERSON + 1, "iscrowd": 1},
        {"id": 13, "category_id": CAR + 1, "iscrowd": 0},  # listed, not in the PNG
    ]
    ann = segments_to_annotation(ids, segs, TAX)
    # crowd segments stay segments of their class; they are listed apart
    np.testing.assert_array_equal(
        ann.panoptic, [[-1, CAR * D + 1, CAR * D + 1, CAR * D + 2, ROAD * D, PERSON * D + 1]]
    )
    assert ann.crowd == (PERSON * D + 1,)
    # JSON area where given, else the pixel count; a listed but absent segment has its entry
    assert ann.areas == {
        CAR * D + 1: 2, CAR * D + 2: 5, ROAD * D: 1, PERSON * D + 1: 1, CAR * D + 3: 0
    }  # fmt: skip
    np.testing.assert_array_equal(segments_to_panoptic(ids, segs, TAX), ann.panoptic)
    with pytest.raises(CocoPanopticError, match="not listed"):
        segments_to_panoptic(np.array([[5]]), segs, TAX)
    with pytest.raises(CocoPanopticError, match="unknown category"):
        segments_to_panoptic(ids, [{"id": 7, "category_id": 99}], TAX)
    # a prediction: iscrowd ignored, and a listed segment absent from the PNG is an error
    pred = segments_to_annotation(ids, segs[:4], TAX, prediction=True)
    assert pred.crowd == () and pred.areas is None
    with pytest.raises(CocoPanopticError, match="does not hold"):
        segments_to_annotation(ids, segs, TAX, prediction=True)


def test_coco_writer_carries_iscrowd_and_sparse_category_ids(tmp_path):
    gt = np.full((4, 6), ROAD * D, np.int32)
    gt[:2, :3] = PERSON * D + 1
    gt[2:, 3:] = PERSON * D + 2
    cats = [
        dict(c, id=i)
        for c, i in zip(categories_from_taxonomy(TAX), (1, 3, 7, 24, 45, 100, 184, 199))
    ]
    data = write_coco_panoptic(tmp_path / "gt.json", tmp_path / "gt", [("a", gt, [PERSON * D + 2])], TAX,
                               categories=cats)  # fmt: skip
    segs = {s["id"]: s for s in data["annotations"][0]["segments_info"]}
    assert segs[PERSON * D + 3]["iscrowd"] == 1 and segs[PERSON * D + 2]["iscrowd"] == 0
    assert segs[PERSON * D + 3]["category_id"] == 100 and segs[ROAD * D + 1]["category_id"] == 1
    ann = open_coco_panoptic(tmp_path / "gt.json").load_annotation(1)
    np.testing.assert_array_equal(ann.panoptic, gt)
    assert ann.crowd == (PERSON * D + 2,)


def test_match_categories_by_normalised_name():
    cats = [
        {"id": 199, "name": "Side Walk", "isthing": 0},
        {"id": 7, "name": "ROAD", "isthing": 0},
        {"id": 24, "name": "traffic light", "isthing": 1},
    ]
    m = match_categories(cats, TAX)
    # category classes: ascending id -> road 0, traffic light 1, side walk 2
    assert m.class_to_category_class[ROAD] == 0 and m.class_to_category_class[SIDEWALK] == 2
    assert m.n_matched == 2
    assert m.unmatched_categories == ("traffic light",)
    assert set(m.unmatched_classes) == {"building", "vegetation", "sky", "person", "car", "bicycle"}
    assert "traffic light" in m.describe() and "bicycle" in m.describe()
    with pytest.raises(CocoPanopticError, match="same name"):
        match_categories([*cats, {"id": 3, "name": "road", "isthing": 0}], TAX)
    pan = np.array([[ROAD * D, SIDEWALK * D + 4, CAR * D + 2, -1]])
    np.testing.assert_array_equal(
        remap_classes(pan, m.class_to_category_class, D, D), [[0, 2 * D + 4, -1, -1]]
    )


def test_coco_missing_segments_info(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x.json").write_text(
        json.dumps({"annotations": [{"image_id": 1, "file_name": "a.png"}]})
    )
    with pytest.raises(CocoPanopticError, match="segments_info"):
        open_coco_panoptic(tmp_path / "x.json", taxonomy=TAX)
    with pytest.raises(CocoPanopticError, match="not found"):
        open_coco_panoptic(tmp_path / "nope.json", taxonomy=TAX)


def test_png_id_encoding(tmp_path):
    from panoptic_ros.evaluation.coco_panoptic import write_png_ids

    ids = np.array([[0, 1, 255, 256, 65536, (1 << 24) - 1]])
    write_png_ids(tmp_path / "a.png", ids)
    np.testing.assert_array_equal(read_png_ids(tmp_path / "a.png"), ids)


# -- agreement with hotcoco ------------------------------------------------------------------------
def hotcoco_eval(tmp_path, pairs, taxonomy=TAX):
    """Write pairs as COCO panoptic and run hotcoco's PanopticEval; returns its results() dict."""
    panoptic = pytest.importorskip("hotcoco.panoptic")
    names = [f"img{i:04d}" for i in range(len(pairs))]
    write_coco_panoptic(
        tmp_path / "gt.json", tmp_path / "gt", zip(names, [g for _, g in pairs]), taxonomy
    )
    write_coco_panoptic(
        tmp_path / "pred.json", tmp_path / "pred", zip(names, [p for p, _ in pairs]), taxonomy
    )
    ev = panoptic.PanopticEval(str(tmp_path / "gt.json"), str(tmp_path / "pred.json"))
    ev.evaluate()
    return ev.results()


def ours_iou_sum(pq, sq, tp):
    return sq * tp


def assert_agrees(ours: PQReport, ref: dict, taxonomy=TAX, tol=1e-6):
    for group, prefix in (("All", ""), ("Things", "_thing"), ("Stuff", "_stuff")):
        if ref[group]["n"] == 0:
            continue
        for k in ("pq", "sq", "rq"):
            assert getattr(ours, k + prefix) == pytest.approx(ref[group][k], abs=tol), (group, k)
    assert ours.n_classes == ref["All"]["n"]
    for c in taxonomy.classes:
        per_class = {int(k): v for k, v in ref["per_class"].items()}  # keys: category ids
        r = per_class[c.id + 1]
        pq, sq, rq, tp, fp, fn = ours.per_class[c.name]
        assert (tp, fp, fn) == (r["tp"], r["fp"], r["fn"]), c.name
        assert ours_iou_sum(pq, sq, tp) == pytest.approx(r["iou"], abs=tol * max(1, tp)), c.name
        if tp + fp + fn:
            assert (pq, sq, rq) == pytest.approx((r["pq"], r["sq"], r["rq"]), abs=tol), c.name


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_hotcoco_random_batches(tmp_path, seed):
    pairs = random_pairs(seed, 40, TAX)
    assert_agrees(pq_of(pairs), hotcoco_eval(tmp_path, pairs))


def test_agrees_with_hotcoco_single_images(tmp_path):
    """One image at a time: per-image counts expose any disagreement that batches could hide."""
    for seed in range(100, 130):
        (pair,) = random_pairs(seed, 1, TAX)
        d = tmp_path / str(seed)
        d.mkdir()
        assert_agrees(pq_of([pair]), hotcoco_eval(d, [pair]))


def test_agrees_with_hotcoco_on_hand_cases(tmp_path):
    cases = []
    gt = np.array([[CAR * D + 1] * 4 + [ROAD * D] * 4], np.int32)
    cases.append((np.array([[CAR * D + 1] * 2 + [ROAD * D] * 6], np.int32), gt))  # IoU exactly 0.5
    gt = np.array([[ROAD * D] * 4 + [-1] * 4], np.int32)
    cases.append(
        (np.array([[ROAD * D] * 2 + [PERSON * D + 1] * 4 + [-1] * 2], np.int32), gt)
    )  # 50 % on void
    cases.append((np.array([[ROAD * D] * 3 + [PERSON * D + 1] * 5], np.int32), gt))  # 80 % on void
    gt = np.array([[CAR * D + 1] * 4 + [-1] * 4], np.int32)
    cases.append((np.full((1, 8), CAR * D + 1, np.int32), gt))
    for i, case in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        assert_agrees(pq_of([case]), hotcoco_eval(d, [case]))


# -- crowd, sparse category ids: sets written from scratch, checked against hotcoco ----------------
CATS = sorted(COCO_CATEGORIES, key=lambda c: c["id"])


def hotcoco_files(gt_json, pred_json) -> dict:
    panoptic = pytest.importorskip("hotcoco.panoptic")
    ev = panoptic.PanopticEval(str(gt_json), str(pred_json))
    ev.evaluate()
    assert ev.reference_deviations() == []
    return ev.results()


def assert_agrees_coco(ours: PQReport, ref: dict, tol=1e-6):
    """All / Things / Stuff and every category (by id) equal to hotcoco's within tol."""
    for group, prefix in (("All", ""), ("Things", "_thing"), ("Stuff", "_stuff")):
        n = {"All": ours.n_classes, "Things": ours.n_thing_classes, "Stuff": ours.n_stuff_classes}[
            group
        ]
        assert n == ref[group]["n"], group
        if n:
            for k in ("pq", "sq", "rq"):
                assert getattr(ours, k + prefix) == pytest.approx(ref[group][k], abs=tol), (
                    group,
                    k,
                )
    per_class = {int(k): v for k, v in ref["per_class"].items()}
    for c in CATS:
        r = per_class[c["id"]]
        pq, sq, rq, tp, fp, fn = ours.per_class[c["name"]]
        assert (tp, fp, fn) == (r["tp"], r["fp"], r["fn"]), c["name"]
        assert sq * tp == pytest.approx(r["iou"], abs=tol * max(1, tp)), c["name"]
        if tp + fp + fn:
            assert (pq, sq, rq) == pytest.approx((r["pq"], r["sq"], r["rq"]), abs=tol), c["name"]


def coco_case(folder, gt_ids, gt_segs, pred_ids, pred_segs):
    """One image written as COCO panoptic from scratch; returns (ours, hotcoco results)."""
    folder.mkdir(parents=True, exist_ok=True)
    gt_ids, pred_ids = np.atleast_2d(gt_ids), np.atleast_2d(pred_ids)
    h, w = gt_ids.shape
    for side, ids, segs in (("gt", gt_ids, gt_segs), ("pred", pred_ids, pred_segs)):
        (folder / side).mkdir(exist_ok=True)
        write_id_png(folder / side / "a.png", ids)
        info = [dict(s, area=int(np.sum(ids == s["id"])), bbox=[0, 0, 1, 1]) for s in segs]
        for s in info:
            s.setdefault("iscrowd", 0)
        (folder / f"{side}.json").write_text(json.dumps({
            "images": [{"id": 42, "file_name": "a.jpg", "width": w, "height": h}],
            "annotations": [{"image_id": 42, "file_name": "a.png", "segments_info": info}],
            "categories": COCO_CATEGORIES,
        }))  # fmt: skip
    ours, _ = pq_compute(folder / "gt.json", folder / "pred.json")
    ref = hotcoco_files(folder / "gt.json", folder / "pred.json")
    assert_agrees_coco(ours, ref)
    return ours


PERSON_C, TRAIN_C, GRAVEL_C = 1, 7, 125  # category ids
CROWD = 70000  # a large RGB id
ROAD_ID, P1, P2, Q = 300, 1 << 20, 5 << 16, 77


def test_crowd_of_the_same_class_absorbs_a_prediction(tmp_path):
    gt = [CROWD] * 4 + [ROAD_ID] * 4
    gseg = [
        {"id": CROWD, "category_id": PERSON_C, "iscrowd": 1},
        {"id": ROAD_ID, "category_id": GRAVEL_C},
    ]
    pred = [P1] * 5 + [Q] * 3  # person: 4 of 5 px on the person crowd region
    r = coco_case(
        tmp_path,
        gt,
        gseg,
        pred,
        [{"id": P1, "category_id": PERSON_C}, {"id": Q, "category_id": GRAVEL_C}],
    )
    assert r.per_class["person"][3:] == (0, 0, 0)  # not an FP; the crowd is no FN either
    assert r.per_class["gravel"] == pytest.approx((0.75, 0.75, 1.0, 1, 0, 0))


def test_crowd_of_another_class_does_not_absorb(tmp_path):
    gt = [CROWD] * 4 + [ROAD_ID] * 4
    gseg = [
        {"id": CROWD, "category_id": PERSON_C, "iscrowd": 1},
        {"id": ROAD_ID, "category_id": GRAVEL_C},
    ]
    pred = [P1] * 5 + [Q] * 3  # a train over the person crowd: a false positive
    r = coco_case(
        tmp_path,
        gt,
        gseg,
        pred,
        [{"id": P1, "category_id": TRAIN_C}, {"id": Q, "category_id": GRAVEL_C}],
    )
    assert r.per_class["train"][3:] == (0, 1, 0) and r.per_class["person"][3:] == (0, 0, 0)


def test_void_plus_own_crowd_together_over_half(tmp_path):
    gt = [CROWD] * 2 + [0] * 1 + [ROAD_ID] * 5
    gseg = [
        {"id": CROWD, "category_id": PERSON_C, "iscrowd": 1},
        {"id": ROAD_ID, "category_id": GRAVEL_C},
    ]
    pred = [P1] * 5 + [Q] * 3  # person: 2 crowd + 1 void of 5 px = 60 %
    r = coco_case(
        tmp_path / "a",
        gt,
        gseg,
        pred,
        [{"id": P1, "category_id": PERSON_C}, {"id": Q, "category_id": GRAVEL_C}],
    )
    assert r.per_class["person"][3:] == (0, 0, 0)
    pred = [P1] * 4 + [Q] * 4  # 2 of its 4 px on the crowd: exactly half
    r = coco_case(tmp_path / "b", [CROWD] * 2 + [ROAD_ID] * 6, gseg, pred,
                  [{"id": P1, "category_id": PERSON_C}, {"id": Q, "category_id": GRAVEL_C}])  # fmt: skip
    assert r.per_class["person"][3:] == (0, 1, 0)  # exactly half on the crowd: still an FP


def test_iou_with_a_prediction_over_a_crowd_region(tmp_path):
    # person 4 px, person crowd 2 px, void 2 px; prediction covers person + crowd + 1 void px:
    # union = 7 + 4 - 4 - 1 (void only) = 6, IoU 4/6 (crowd pixels stay in the union)
    gt = [P2] * 4 + [CROWD] * 2 + [0] * 2
    gseg = [
        {"id": P2, "category_id": PERSON_C},
        {"id": CROWD, "category_id": PERSON_C, "iscrowd": 1},
    ]
    r = coco_case(tmp_path / "a", gt, gseg, [P1] * 7 + [0], [{"id": P1, "category_id": PERSON_C}])
    assert r.per_class["person"] == pytest.approx((2 / 3, 2 / 3, 1.0, 1, 0, 0))
    # the crowd pushes IoU to exactly 0.5: no match, and half on the crowd is not excused
    gt = [P2] * 3 + [CROWD] * 3
    r = coco_case(tmp_path / "b", gt, gseg, [P1] * 6, [{"id": P1, "category_id": PERSON_C}])
    assert r.per_class["person"][3:] == (0, 1, 1)


def test_crowd_is_never_matched(tmp_path):
    gt = [CROWD] * 6 + [ROAD_ID] * 2
    gseg = [
        {"id": CROWD, "category_id": PERSON_C, "iscrowd": 1},
        {"id": ROAD_ID, "category_id": GRAVEL_C},
    ]
    r = coco_case(
        tmp_path,
        gt,
        gseg,
        gt,
        [{"id": CROWD, "category_id": PERSON_C}, {"id": ROAD_ID, "category_id": GRAVEL_C}],
    )
    assert r.per_class["person"][3:] == (0, 0, 0) and r.per_class["gravel"][3:] == (1, 0, 0)


def test_two_crowd_segments_of_a_class_last_one_counts(tmp_path):
    gt = [CROWD] * 3 + [CROWD + 1] * 2 + [ROAD_ID] * 3
    a = {"id": CROWD, "category_id": PERSON_C, "iscrowd": 1}
    b = {"id": CROWD + 1, "category_id": PERSON_C, "iscrowd": 1}
    road = {"id": ROAD_ID, "category_id": GRAVEL_C}
    pred, pseg = [P1] * 3 + [0] * 5, [{"id": P1, "category_id": PERSON_C}]
    assert coco_case(tmp_path / "ab", gt, [a, b, road], pred, pseg).per_class["person"][3:] == (
        0,
        1,
        0,
    )
    assert coco_case(tmp_path / "ba", gt, [b, a, road], pred, pseg).per_class["person"][3:] == (
        0,
        0,
        0,
    )


def test_image_without_predictions(tmp_path):
    gt = [P2] * 4 + [ROAD_ID] * 4
    gseg = [{"id": P2, "category_id": PERSON_C}, {"id": ROAD_ID, "category_id": GRAVEL_C}]
    r = coco_case(tmp_path, gt, gseg, [0] * 8, [])
    assert r.per_class["person"][3:] == (0, 0, 1) and r.per_class["gravel"][3:] == (0, 0, 1)
    assert r.pq == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_crowd_sets_agree_with_hotcoco(tmp_path, seed):
    """Random sets: sparse ids, large RGB ids, ~10 % crowd things, void, an empty prediction."""
    n_crowd = write_random_coco_sets(tmp_path, seed, 25)
    assert n_crowd > 0
    ours, _ = pq_compute(tmp_path / "gt.json", tmp_path / "pred.json")
    assert_agrees_coco(ours, hotcoco_files(tmp_path / "gt.json", tmp_path / "pred.json"))


def test_crowd_heavy_set_agrees_with_hotcoco_and_crowd_matters(tmp_path):
    write_random_coco_sets(tmp_path, 99, 30, crowd_rate=0.5)
    ours, _ = pq_compute(tmp_path / "gt.json", tmp_path / "pred.json")
    ref = hotcoco_files(tmp_path / "gt.json", tmp_path / "pred.json")
    assert_agrees_coco(ours, ref)
    # the same set with iscrowd forced to 0 scores differently: the crowd rules are exercised
    data = json.loads((tmp_path / "gt.json").read_text())
    for ann in data["annotations"]:
        for s in ann["segments_info"]:
            s["iscrowd"] = 0
    (tmp_path / "gt0.json").write_text(json.dumps(data))
    no_crowd, _ = pq_compute(
        tmp_path / "gt0.json", tmp_path / "pred.json", gt_folder=tmp_path / "gt"
    )
    assert abs(no_crowd.pq - ours.pq) > 1e-3


def test_crowd_argument_on_maps():
    """The metric API itself: crowd values and JSON areas next to plain maps."""
    gt = np.array([[PERSON * D + 9] * 4 + [ROAD * D] * 4], np.int32)
    pred = np.array([[PERSON * D + 1] * 5 + [ROAD * D] * 3], np.int32)
    m = PanopticQuality(TAX)
    m.update(pred, gt, crowd=[PERSON * D + 9])
    r = m.compute()
    assert r.per_class["person"][3:] == (0, 0, 0) and r.per_class["road"][3:] == (1, 0, 0)
    m = PanopticQuality(TAX)
    m.update(pred, gt)  # without the crowd flag the person is matched (IoU 4/5)
    assert m.compute().per_class["person"] == pytest.approx((0.8, 0.8, 1.0, 1, 0, 0))
    m = PanopticQuality(TAX)  # JSON area 6 instead of 4: IoU 4 / (5 + 6 - 4) = 4/7
    m.update(pred, gt, areas={PERSON * D + 9: 6, ROAD * D: 4, CAR * D + 1: 3})
    r = m.compute()
    assert r.per_class["person"][0] == pytest.approx(4 / 7) and r.per_class["car"][3:] == (0, 0, 1)
    with pytest.raises(ValueError, match="crowd holds id"):
        m.update(pred, gt, crowd=[8 * D])
