"""PQ / SQ / RQ: hand-computed cases and agreement with hotcoco (panopticapi semantics)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pq_random import random_gt, random_pairs

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.evaluation.coco_panoptic import (
    CocoPanopticError,
    open_coco_panoptic,
    panoptic_to_segments,
    read_png_ids,
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
        {"id": 9, "category_id": CAR + 1, "iscrowd": 0},
        {"id": 11, "category_id": ROAD + 1, "iscrowd": 0},
        {"id": 12, "category_id": PERSON + 1, "iscrowd": 1},
    ]
    pan = segments_to_panoptic(ids, segs, TAX)
    np.testing.assert_array_equal(pan, [[-1, CAR * D + 1, CAR * D + 1, CAR * D + 2, ROAD * D, -1]])
    with pytest.raises(CocoPanopticError, match="not listed"):
        segments_to_panoptic(np.array([[5]]), segs, TAX)
    with pytest.raises(CocoPanopticError, match="unknown category"):
        segments_to_panoptic(ids, [{"id": 7, "category_id": 99}], TAX)


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
