"""Model families through the one factory: this project's contract, Panoptic-DeepLab raw heads,
model sources (cards, taxonomy files of every accepted format), mismatch / void / error listing.

Real components: graphs exported by torch (the project's network) or written with onnx.helper
in the exact raw-head signature, real ONNX Runtime sessions, the real Segmenter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

pytest.importorskip("onnx")
from family_models import (  # noqa: E402
    COCO_80,
    coco_categories_json,
    detectron2_panoptic,
    pdl19,  # noqa: F401  (module-scoped fixture)
    pdl_raw_export,
    raw_heads_onnx,
    segment_agreement,
)

from panoptic_ros.core.postprocess import PostprocessConfig, result_from_segments  # noqa: E402
from panoptic_ros.core.taxonomy import Taxonomy  # noqa: E402
from panoptic_ros.core.taxonomy_sources import load_preset  # noqa: E402
from panoptic_ros.core.types import Segments  # noqa: E402
from panoptic_ros.families.factory import build_segmenter  # noqa: E402
from panoptic_ros.families.model_store import ModelError  # noqa: E402

CITYSCAPES = [c.name for c in load_preset("cityscapes.yaml")[0].classes]


@pytest.fixture(scope="module")
def default_raw(tmp_path_factory):
    """``panoptic-ros export --raw`` of models/default (its raw graph)."""
    return pdl_raw_export(tmp_path_factory.mktemp("raw") / "default_raw.onnx")


def _scenes(n, h, w):
    from panoptic_ros.core.synthetic import generate_scene, validation_seeds

    return [generate_scene(s, h, w).image for s in validation_seeds(n, start=777)]


def _parity(seg, images, stuff_area=64):
    """Our host decode vs the detectron2 rules on the same raw outputs, at head resolution."""
    fam = seg.family
    cfg = PostprocessConfig(fam.config["center_threshold"], stuff_area, 0)
    total, centres = 0.0, 0
    for img in images:
        prepared = fam.prepare([img], 1)
        out = seg.backend.infer(prepared.feeds)
        got = fam.to_result(out, prepared, 0, cfg).panoptic
        ref = detectron2_panoptic(
            out["semantic_logits"][0],
            out["center_heatmap"][0],
            out["center_offset"][0],
            set(fam.taxonomy.thing_ids),
            threshold=fam.config["center_threshold"],
            nms_kernel=fam.config["nms_kernel"],
            top_k=fam.config["top_k"],
            stuff_area=stuff_area,
        )
        total += segment_agreement(ref, got)
        centres += len(np.unique(ref[(ref >= 0) & (ref % 1000 > 0)]))
    return total / len(images), centres


def test_own_raw_export_runs_as_panoptic_deeplab_with_detectron2_parity(default_raw):
    with build_segmenter(default_raw, "onnxruntime", threads=1) as seg:
        assert seg.family.name == "panoptic_deeplab"
        assert seg.taxonomy == Taxonomy.default()  # 8 classes, no taxonomy file: the default
        assert seg.family_config == {"center_threshold": 0.1, "nms_kernel": 7, "top_k": 200}
        h, w = seg.family._input.size
        agree, instances = _parity(seg, _scenes(3, h, w))
        assert agree >= 0.999 and instances > 0
        r = seg.segment(_scenes(1, 480, 640)[0])
        assert r.semantic.shape == (480, 640) and r.instances


def test_own_contract_and_raw_heads_agree_on_semantics(default_raw):
    """Same weights, two graphs: the contract graph (in-graph NMS) and the raw heads + host decode
    give the same semantic map; instances differ only by the NMS window (11 vs detectron2's 7)."""
    img = _scenes(1, 240, 320)[0]
    with build_segmenter("default", "onnxruntime", threads=1) as a:
        ra = a.segment(img)
        assert a.family.name == "ours"
    with build_segmenter(default_raw, "onnxruntime", threads=1, params={"nms_kernel": 11}) as b:
        rb = b.segment(img)
    assert (ra.semantic == rb.semantic).mean() >= 0.999


def test_pdl_19_classes_random_init(pdl19):
    with build_segmenter(pdl19, "onnxruntime", threads=1) as seg:
        tax = seg.taxonomy
        assert tax.names() == CITYSCAPES
        assert [tax.classes[i].is_thing for i in tax.thing_ids] and len(tax.thing_ids) == 8
        assert tax.classes[CITYSCAPES.index("car")].color == (0, 0, 142)
        agree, instances = _parity(seg, _scenes(3, 96, 128))
        assert agree >= 0.999 and instances > 0
        r = seg.segment(_scenes(1, 120, 160)[0])
        assert {i.class_id for i in r.instances} <= set(tax.thing_ids)


def test_19_classes_without_taxonomy_refused(tmp_path, pdl19):
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(pdl19.read_bytes())
    with pytest.raises(ModelError) as ei:
        build_segmenter(bare, "onnxruntime")
    msg = str(ei.value)
    assert "19 classes" in msg and "8" in msg and "classes.yaml" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "source", ["ultralytics_names", "coco_categories", "hf_id2label", "names_list"]
)
def test_taxonomy_sources(tmp_path, source):
    """19, 80 and 133 classes from every accepted format; is_thing from the source or the presets."""
    if source == "ultralytics_names":
        names = {i: n for i, n in enumerate(COCO_80)}
        p = raw_heads_onnx(tmp_path / "m.onnx", 80, metadata={"names": repr(names)})
        want_n, want_things = 80, 80
    elif source == "coco_categories":
        p = raw_heads_onnx(tmp_path / "m.onnx", 133)
        coco_categories_json(tmp_path / "cats.json")
        (tmp_path / "m.card.yaml").write_text(
            yaml.safe_dump({"family": "panoptic_deeplab", "taxonomy": "cats.json"})
        )
        want_n, want_things = 133, 80
    elif source == "hf_id2label":
        d = tmp_path / "optimum"
        d.mkdir()
        p = raw_heads_onnx(d / "model.onnx", 133)
        coco = [c.name for c in load_preset("coco_panoptic.yaml")[0].classes]
        (d / "config.json").write_text(
            json.dumps({"id2label": {str(i): n for i, n in enumerate(coco)}})
        )
        p = d  # the folder, as optimum-cli writes it
        want_n, want_things = 133, 80
    else:
        p = raw_heads_onnx(tmp_path / "m.onnx", 19)
        (tmp_path / "classes.yaml").write_text(yaml.safe_dump({"names": CITYSCAPES}))
        want_n, want_things = 19, 8
    with build_segmenter(p, "onnxruntime", threads=1) as seg:
        assert seg.taxonomy.num_classes == want_n
        assert len(seg.taxonomy.thing_ids) == want_things
        r = seg.segment(_scenes(1, 60, 80)[0])
        assert r.semantic.shape == (60, 80)


def test_class_count_mismatch_names_both_counts_and_file(tmp_path):
    p = raw_heads_onnx(tmp_path / "m.onnx", 80)
    cats = coco_categories_json(tmp_path / "cats.json")
    (tmp_path / "m.card.yaml").write_text(yaml.safe_dump({"taxonomy": "cats.json"}))
    with pytest.raises(ModelError) as ei:
        build_segmenter(p, "onnxruntime")
    msg = str(ei.value)
    assert "80" in msg and "133" in msg and str(cats) in msg


def test_unknown_graph_lists_every_family(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    p = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    with pytest.raises(ModelError) as ei:
        build_segmenter(p, "onnxruntime")
    msg = str(ei.value)
    # the closest family's violations in full, every other family's contract in one line
    for part in (
        str(p),
        "Closest, panoptic_deeplab:",
        "'semantic_logits'",
        "ours: inputs image + center_threshold",
        "yolo_seg: input images",
        "mask_classification: input pixel_values",
        "docs/models.md",
    ):
        assert part in msg, msg
    assert len(msg) - len(str(p)) < 700, msg


def test_card_input_color_normalisation_and_thresholds(tmp_path):
    """A card renames the image input, asks for BGR and mean/std, and sets family thresholds."""
    import onnx

    p = raw_heads_onnx(tmp_path / "m.onnx", 19)
    m = onnx.load(str(p))
    m.graph.input[0].name = "pixels"
    for n in m.graph.node:
        n.input[:] = ["pixels" if i == "image" else i for i in n.input]
    onnx.save(m, str(p))
    card = {
        "family": "panoptic_deeplab",
        "input": "pixels",
        "color": "BGR",
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "thresholds": {"nms_kernel": 3, "top_k": 50, "center_threshold": 0.3},
        "taxonomy": {"names": CITYSCAPES},
    }
    (tmp_path / "m.card.yaml").write_text(yaml.safe_dump(card))
    with build_segmenter(p, "onnxruntime", threads=1) as seg:
        assert seg.family_config == {"center_threshold": 0.3, "nms_kernel": 3, "top_k": 50}
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0] = 255  # red
        x = seg.family.prepare([img], 1).feeds["pixels"]
        assert np.allclose(x[0, 2], (1 - 0.406) / 0.225) and np.allclose(x[0, 0], -0.485 / 0.229)
        with pytest.raises(ValueError, match="nms_kernel"):
            seg.update_config(nms_kernel=4)
        with pytest.raises(ValueError, match="unknown"):
            seg.update_config(score_threshold=0.5)
        seg.update_config(top_k=10, center_threshold=0.2)
        assert seg.family_config["top_k"] == 10 and seg.config.center_threshold == 0.2
    bad = dict(card, layout="CHW")
    (tmp_path / "m.card.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ModelError, match="layout"):
        build_segmenter(p, "onnxruntime")
    (tmp_path / "m.card.yaml").write_text(yaml.safe_dump(dict(card, resize="letterbox")))
    with pytest.raises(ModelError, match="resize"):
        build_segmenter(p, "onnxruntime")
    (tmp_path / "m.card.yaml").write_text(yaml.safe_dump(dict(card, colour="BGR")))
    with pytest.raises(ModelError, match="unknown key"):
        build_segmenter(p, "onnxruntime")


def test_torch_backend_refuses_onnx_graphs(tmp_path):
    from panoptic_ros.backends import BackendError

    p = raw_heads_onnx(tmp_path / "m.onnx", 8)
    with pytest.raises(BackendError, match="onnxruntime or tensorrt"):
        build_segmenter(p, "torch")


# -- the shared host step --------------------------------------------------------------------------
def test_void_is_never_class_zero():
    tax = Taxonomy.default()  # 8 classes: 0..4 stuff, 5..7 things
    sem = np.array([[-1, 0, 8, 200], [4, 4, -5, 0]], np.int32)
    seg = Segments(sem, np.zeros_like(sem), np.zeros(0, np.int32), np.zeros(0, np.float32))
    r = result_from_segments(seg, tax, PostprocessConfig(0.1, 0, 0))
    assert r.semantic.tolist() == [[255, 0, 255, 255], [4, 4, 255, 0]]
    assert r.panoptic.tolist() == [[-1, 0, -1, -1], [4000, 4000, -1, 0]]


def test_result_from_segments_rules():
    tax = Taxonomy.default()
    sem = np.full((4, 6), 0, np.int32)
    ins = np.zeros((4, 6), np.int32)
    ins[0, :3] = 1  # a car (thing) of 3 pixels
    ins[1, :2] = 2  # a "person" of 2 pixels: under min_instance_area 3 -> unlabeled
    ins[2, :] = 3  # an instance of the stuff class sky: fused into sky
    sem[3, 0] = 6  # a car pixel without instance: unlabeled
    sem[3, 5] = 2  # one building pixel: under stuff_area_min 2 -> unlabeled
    seg = Segments(sem, ins, np.array([6, 5, 4], np.int32), np.array([0.9, 0.8, 0.7], np.float32))
    r = result_from_segments(seg, tax, PostprocessConfig(0.1, 2, 3))
    assert r.semantic[0, :3].tolist() == [6, 6, 6] and r.instance[0, :3].tolist() == [1, 1, 1]
    assert r.semantic[1, :2].tolist() == [255, 255] and r.panoptic[1, 0] == -1
    assert r.semantic[2].tolist() == [4] * 6 and r.instance[2].max() == 0
    assert r.semantic[3, 0] == 255 and r.semantic[3, 5] == 255
    assert [(i.id, i.class_id, i.area, i.bbox) for i in r.instances] == [(1, 6, 3, (0, 0, 3, 1))]
    assert r.panoptic[0, 0] == 6001


def test_check_onnx_reports_ort_load_failure_and_family(tmp_path, capsys, default_raw):
    """A graph ONNX Runtime cannot load (GridSample(16) on float64, as the TorchScript export of
    HF Mask2Former writes it) is reported as such, not as unsupported=0."""
    import onnx
    from onnx import TensorProto, helper

    from panoptic_ros.cli import main

    g = helper.make_graph(
        [helper.make_node("GridSample", ["x", "grid"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1, 4, 4]),
            helper.make_tensor_value_info("grid", TensorProto.DOUBLE, [1, 2, 2, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 1, 2, 2])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])
    m.ir_version = 8
    p = tmp_path / "gs.onnx"
    onnx.save(m, str(p))
    rc = main(["check-onnx", str(p)])
    out, err = capsys.readouterr()
    assert rc == 1 and out.strip().splitlines()[-1].endswith("ort=fail family=none")
    assert "GridSample" in err and "ONNX Runtime cannot load" in err
    rc = main(["check-onnx", str(default_raw)])
    out, err = capsys.readouterr()
    assert rc == 0 and out.strip().splitlines()[-1].endswith("ort=ok family=panoptic_deeplab")
