"""``panoptic-ros eval`` end to end: COCO panoptic folders, bad inputs, synthetic scenes."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pq_random import random_pairs

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.evaluation.coco_panoptic import write_coco_panoptic, write_png_ids

TAX = Taxonomy.default()
REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^PQ=(\d\.\d{6}) SQ=(\d\.\d{6}) RQ=(\d\.\d{6})$")


def run_eval(*args, timeout=120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "panoptic_ros.cli", "eval", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_line(proc) -> tuple[float, float, float]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    m = LINE.match(lines[-1])
    assert m, f"last stdout line {lines[-1]!r}"
    vals = tuple(float(v) for v in m.groups())
    assert all(0.0 <= v <= 1.0 for v in vals)
    return vals


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    pairs = random_pairs(21, 8, TAX)
    names = [f"frame{i:03d}" for i in range(len(pairs))]
    write_coco_panoptic(d / "gt.json", d / "gt", zip(names, [g for _, g in pairs]), TAX)
    write_coco_panoptic(d / "pred.json", d / "pred", zip(names, [p for p, _ in pairs]), TAX)
    return d


def test_prediction_equal_to_gt_is_one(coco):
    proc = run_eval("--gt-json", coco / "gt.json", "--gt", coco / "gt", "--pred-json", coco / "gt.json",
                    "--pred", coco / "gt")  # fmt: skip
    assert proc.stdout.strip().splitlines()[-1] == "PQ=1.000000 SQ=1.000000 RQ=1.000000"
    assert "Category" in proc.stderr and "person" in proc.stderr  # per-class table on stderr


def test_perturbed_prediction_matches_hotcoco(coco, tmp_path):
    panoptic = pytest.importorskip("hotcoco.panoptic")
    # folders default to the JSON path without .json, as in panopticapi
    proc = run_eval("--gt-json", coco / "gt.json", "--pred-json", coco / "pred.json",
                    "--report-json", tmp_path / "r.json")  # fmt: skip
    pq, sq, rq = last_line(proc)
    ev = panoptic.PanopticEval(str(coco / "gt.json"), str(coco / "pred.json"))
    ev.evaluate()
    ref = ev.results()["All"]
    assert (pq, sq, rq) == pytest.approx((ref["pq"], ref["sq"], ref["rq"]), abs=5e-7)
    assert 0.0 < pq < 1.0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pq"] == pytest.approx(ref["pq"], abs=1e-9)
    assert set(report["per_class"]) == set(TAX.names())


def test_predictions_without_categories_use_gt_categories(coco, tmp_path):
    data = json.loads((coco / "pred.json").read_text())
    del data["categories"]
    (tmp_path / "pred.json").write_text(json.dumps(data))
    a = last_line(run_eval("--gt-json", coco / "gt.json", "--pred-json", tmp_path / "pred.json",
                           "--pred", coco / "pred"))  # fmt: skip
    b = last_line(run_eval("--gt-json", coco / "gt.json", "--pred-json", coco / "pred.json"))
    assert a == b


def _error(proc, pattern):
    assert proc.returncode != 0
    assert re.search(pattern, proc.stderr), proc.stderr
    assert not LINE.search(proc.stdout)


def test_missing_folder(coco):
    _error(run_eval("--gt-json", coco / "gt.json", "--pred-json", coco / "pred.json", "--pred", coco / "nowhere"),
           r"folder not found")  # fmt: skip


def test_json_without_segments_info(coco, tmp_path):
    data = json.loads((coco / "pred.json").read_text())
    for ann in data["annotations"]:
        del ann["segments_info"]
    (tmp_path / "pred.json").write_text(json.dumps(data))
    _error(run_eval("--gt-json", coco / "gt.json", "--pred-json", tmp_path / "pred.json", "--pred", coco / "pred"),
           r"segments_info")  # fmt: skip


def test_png_size_mismatch(coco, tmp_path):
    import shutil

    shutil.copytree(coco / "pred", tmp_path / "pred")
    data = json.loads((coco / "pred.json").read_text())
    ann = data["annotations"][0]
    write_png_ids(tmp_path / "pred" / ann["file_name"], np.zeros((3, 3), np.int64))
    ann["segments_info"] = []
    (tmp_path / "pred.json").write_text(json.dumps(data))
    _error(run_eval("--gt-json", coco / "gt.json", "--pred-json", tmp_path / "pred.json"), r"3x3")


def test_missing_prediction_and_bad_mode(coco, tmp_path):
    data = json.loads((coco / "pred.json").read_text())
    data["annotations"] = data["annotations"][1:]
    (tmp_path / "pred.json").write_text(json.dumps(data))
    _error(run_eval("--gt-json", coco / "gt.json", "--pred-json", tmp_path / "pred.json", "--pred", coco / "pred"),
           r"no prediction for image_id")  # fmt: skip
    _error(run_eval("--pred-json", coco / "pred.json"), r"needs --gt-json")
    _error(run_eval(), r"exactly one of")


def _missing_modules() -> str:
    for mod in (
        "panoptic_ros.core.pipeline",
        "panoptic_ros.core.synthetic",
        "panoptic_ros.families.model_store",
        "onnxruntime",
    ):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} not available"
    return ""


needs_pipeline = pytest.mark.skipif(bool(_missing_modules()), reason=_missing_modules() or "ok")


@pytest.fixture(scope="module")
def model_env(tmp_path_factory):
    """(--model value, env): the trained default model, else an untrained one saved to a temp dir.

    The untrained model scores about 0 but runs the same plumbing (export, ORT, postprocess).
    ONNX exports are cached in a temp dir either way.
    """
    import os

    d = tmp_path_factory.mktemp("model")
    env = dict(os.environ, PANOPTIC_ROS_CACHE=str(d / "cache"))
    from panoptic_ros.families.model_store import load_model_info

    try:
        load_model_info("default")
        return "default", env
    except Exception:
        pass
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from panoptic_ros.families.model_store import save_model
    from panoptic_ros.families.panoptic_net import (
        ARCH_DEFAULTS,
        DEFAULT_MEAN,
        DEFAULT_STD,
        build_net,
    )

    torch.manual_seed(0)
    save_model(d / "untrained", build_net(TAX.num_classes), TAX, input_size=(240, 320), top_k=32,
               arch=dict(ARCH_DEFAULTS), mean=DEFAULT_MEAN, std=DEFAULT_STD)  # fmt: skip
    return str(d / "untrained"), env


@needs_pipeline
def test_synthetic_three_scenes(model_env):
    model, env = model_env
    proc = run_eval("--synthetic", 3, "--model", model, timeout=600, env=env)
    last_line(proc)
    assert "eval synthetic" in proc.stderr and "All" in proc.stderr


VIDEO_LINE = re.compile(
    r"^tracking=(off|oracle|on) STQ=(\S+) AQ=(\S+) SQ=(\S+) IDSW_PER_100=(\S+) IDSW=(\d+) "
    r"FRAG_PER_100=(\S+) MOTA=(\S+) GT_TRACK_FRAMES=(\d+)$"
)


@needs_pipeline
def test_sequences_two(model_env, tmp_path):
    """--sequences: model + tracker on held-out videos; three parseable lines, tracked last."""
    model, env = model_env
    proc = run_eval("--sequences", 2, "--frames", 8, "--model", model, "--report-json",
                    tmp_path / "v.json", timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()[-3:]
    parsed = [VIDEO_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [m.group(1) for m in parsed] == ["off", "oracle", "on"]
    for m in parsed:
        stq, aq, sq, per100 = (float(m.group(i)) for i in (2, 3, 4, 5))
        assert all(0.0 <= v <= 1.0 for v in (stq, aq, sq)), m.group(0)
        assert per100 == pytest.approx(100 * int(m.group(6)) / int(m.group(9)), abs=1e-4)
        assert int(m.group(9)) > 0
    assert parsed[0].group(4) == parsed[2].group(4)  # same segmentation: same SQ
    assert "eval sequences" in proc.stderr and "GT track-frames" in proc.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert set(report) >= {"off", "oracle", "on", "tracker", "seeds"}
    assert report["seeds"] == [20_000_000, 20_000_001]
    assert report["on"]["aq"] == pytest.approx(float(parsed[2].group(3)), abs=1e-6)


@needs_pipeline
def test_sequences_drop_scores_only_the_kept_frames(model_env, tmp_path):
    """--drop P --no-stamps: the frames dropped are neither tracked nor scored."""
    from panoptic_ros.cli.evaluate import kept_frames

    model, env = model_env
    proc = run_eval("--sequences", 2, "--frames", 8, "--drop", 0.5, "--no-stamps", "--model",
                    model, "--report-json", tmp_path / "v.json", timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [VIDEO_LINE.match(x).group(1) for x in proc.stdout.strip().splitlines()[-3:]] == [
        "off",
        "oracle",
        "on",
    ]
    report = json.loads((tmp_path / "v.json").read_text())
    kept = sum(len(kept_frames(s, 8, 0.5)) for s in report["seeds"])
    assert kept < 16 and report["frames_scored"] == kept
    assert report["on"]["n_frames"] == kept and report["off"]["n_frames"] == kept
    assert (report["drop"], report["stamps"]) == (0.5, False)
    assert "no stamps (per-frame motion)" in proc.stderr


def test_kept_frames_seeded_first_kept_and_nested():
    from panoptic_ros.cli.evaluate import kept_frames

    assert kept_frames(7, 30, 0.0) == list(range(30))
    k3, k5 = kept_frames(7, 30, 0.3), kept_frames(7, 30, 0.5)
    assert k3 == kept_frames(7, 30, 0.3) and k3[0] == 0 and k5[0] == 0
    assert set(k5) <= set(k3) and len(k5) < len(k3) < 30  # same draws, higher P drops more
    assert kept_frames(8, 30, 0.5) != k5  # per sequence seed
    assert kept_frames(7, 30, 0.999) == [0]  # never the first


def test_sequences_bad_arguments():
    _error(run_eval("--sequences", 0), r"--sequences needs a positive number")
    _error(run_eval("--sequences", 1, "--drop", 1), r"--drop must be in \[0, 1\)")
    _error(run_eval("--sequences", 1, "--frames", 0), r"--frames needs a positive number")
    _error(run_eval("--sequences", 1, "--synthetic", 1), r"exactly one of")
    _error(run_eval("--sequences", 1, "--param", "tracking_max_age=-1"), r"tracking_max_age")


@needs_pipeline
def test_images_folder(tmp_path, model_env):
    """--images: model run on RGB files named by the ground truth; scores as --synthetic does."""
    import cv2

    from panoptic_ros.core import synthetic

    scenes = [synthetic.generate_scene(s, 240, 320, TAX) for s in synthetic.validation_seeds(2)]
    (tmp_path / "images").mkdir()
    for i, sc in enumerate(scenes):
        cv2.imwrite(str(tmp_path / "images" / f"s{i}.png"), sc.image[..., ::-1])
    write_coco_panoptic(tmp_path / "gt.json", tmp_path / "gt", [(f"s{i}", sc.panoptic) for i, sc in enumerate(scenes)],
                        TAX, image_ext=".png")  # fmt: skip
    model, env = model_env
    a = last_line(run_eval("--images", tmp_path / "images", "--gt-json", tmp_path / "gt.json", "--model", model,
                           timeout=600, env=env))  # fmt: skip
    b = last_line(run_eval("--synthetic", 2, "--model", model, timeout=600, env=env))
    assert a == pytest.approx(b, abs=1e-6)


# COCO-style names and sparse ids for the default model's classes; "bicycle" is left out and
# "giraffe" has no model class, so the mapping report has one name in each direction.
GT_CATEGORY = {"road": (7, "Road"), "sidewalk": (24, "side walk"), "building": (45, "BUILDING"),
               "vegetation": (184, "vegetation"), "sky": (199, "Sky"), "person": (1, "person"),
               "car": (3, "car")}  # fmt: skip
GIRAFFE = 25


def _write_gt_from_scratch(folder: Path, scenes) -> None:
    """Ground truth for the scenes as COCO panoptic, written with numpy/cv2/json only.

    Sparse category ids, large segment ids, the first car of every scene ``iscrowd: 1``,
    bicycles relabelled as giraffes (a category the model does not have). Scene 0's image
    is named ``.jpg`` in the JSON but stored as ``.png`` (found by its stem)."""
    import cv2
    from pq_random import write_id_png

    (folder / "gt").mkdir(parents=True)
    (folder / "images").mkdir()
    rng = np.random.default_rng(5)
    images, anns = [], []
    for i, sc in enumerate(scenes):
        name = f"{(i + 1) * 139:012d}"
        ext = ".png" if i == 0 else ".jpg"
        cv2.imwrite(str(folder / "images" / f"{name}{ext}"), sc.image[..., ::-1])
        values = [int(v) for v in np.unique(sc.panoptic) if v >= 0]
        seg_ids = rng.choice(np.arange(1 << 16, 1 << 24), size=len(values), replace=False)
        ids = np.zeros(sc.panoptic.shape, np.int64)
        info, crowd_done = [], False
        for v, sid in zip(values, seg_ids):
            m = sc.panoptic == v
            ids[m] = sid
            name_ = TAX.classes[v // TAX.label_divisor].name
            cat = GIRAFFE if name_ == "bicycle" else GT_CATEGORY[name_][0]
            crowd = name_ == "car" and not crowd_done
            crowd_done |= crowd
            info.append({"id": int(sid), "category_id": cat, "area": int(m.sum()), "bbox": [0, 0, 1, 1],
                         "iscrowd": int(crowd)})  # fmt: skip
        write_id_png(folder / "gt" / f"{name}.png", ids)
        h, w = ids.shape
        images.append({"id": 500 + i, "file_name": f"{name}.jpg", "width": w, "height": h})
        anns.append({"image_id": 500 + i, "file_name": f"{name}.png", "segments_info": info})
    cats = [{"id": cid, "name": n, "isthing": int(TAX.classes[TAX.names().index(k)].is_thing)}
            for k, (cid, n) in GT_CATEGORY.items()] + [{"id": GIRAFFE, "name": "giraffe", "isthing": 1}]  # fmt: skip
    (folder / "gt.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )


@needs_pipeline
def test_images_coco_set_sparse_ids_name_mapping_and_written_predictions(tmp_path, model_env):
    """--images on a COCO set from elsewhere: names mapped, the unmapped reported, predictions
    written as COCO panoptic score the same with hotcoco and with --pred-json."""
    panoptic = pytest.importorskip("hotcoco.panoptic")
    from panoptic_ros.core import synthetic

    scenes = [synthetic.generate_scene(s, 240, 320, TAX) for s in synthetic.validation_seeds(3)]
    _write_gt_from_scratch(tmp_path, scenes)
    model, env = model_env
    proc = run_eval("--images", tmp_path / "images", "--gt-json", tmp_path / "gt.json", "--model", model,
                    "--write-pred", tmp_path / "out", "--report-json", tmp_path / "r.json",
                    timeout=600, env=env)  # fmt: skip
    pq, sq, rq = last_line(proc)
    assert re.search(r"1 ground-truth category has no model class.*: giraffe", proc.stderr), (
        proc.stderr
    )
    assert re.search(
        r"1 model class is not among the ground-truth categories.*: bicycle", proc.stderr
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["unmatched_categories"] == ["giraffe"] and report["unmatched_classes"] == [
        "bicycle"
    ]
    assert set(report["per_class"]) == {n for _, n in GT_CATEGORY.values()} | {"giraffe"}
    assert report["per_class"]["giraffe"]["tp"] == 0 and report["per_class"]["giraffe"]["fn"] > 0

    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [im["id"] for im in written["images"]] == [500, 501, 502]
    assert {s["category_id"] for a in written["annotations"] for s in a["segments_info"]} <= {
        cid for cid, _ in GT_CATEGORY.values()
    }
    ev = panoptic.PanopticEval(
        str(tmp_path / "gt.json"), str(tmp_path / "out" / "predictions.json")
    )
    ev.evaluate()
    ref = ev.results()["All"]
    assert (pq, sq, rq) == pytest.approx((ref["pq"], ref["sq"], ref["rq"]), abs=5e-7)
    again = last_line(
        run_eval(
            "--gt-json", tmp_path / "gt.json", "--pred-json", tmp_path / "out" / "predictions.json"
        )
    )
    assert again == (pq, sq, rq)


@needs_pipeline
def test_images_no_name_maps(tmp_path, model_env):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    cats = [{"id": 3, "name": "giraffe", "isthing": 1}]
    (tmp_path / "gt.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": cats})
    )
    model, env = model_env
    _error(run_eval("--images", tmp_path / "images", "--gt-json", tmp_path / "gt.json", "--model", model, env=env),
           r"no model class name matches a category.*giraffe")  # fmt: skip
    _error(run_eval("--gt-json", tmp_path / "gt.json", "--pred-json", tmp_path / "gt.json",
                    "--write-pred", tmp_path / "o"), r"--write-pred needs --images")  # fmt: skip


def test_prediction_categories_are_read_as_the_ground_truths(coco, tmp_path):
    """panopticapi ignores a prediction file's categories: a renamed list changes nothing."""
    data = json.loads((coco / "pred.json").read_text())
    for c in data["categories"]:
        c["name"] = c["name"].upper() + "_X"
    (tmp_path / "pred.json").write_text(json.dumps(data))
    proc = run_eval(
        "--gt-json",
        coco / "gt.json",
        "--pred-json",
        tmp_path / "pred.json",
        "--pred",
        coco / "pred",
    )
    assert last_line(proc) == last_line(
        run_eval("--gt-json", coco / "gt.json", "--pred-json", coco / "pred.json")
    )
    assert "category ids are read as the ground truth's" in proc.stderr
