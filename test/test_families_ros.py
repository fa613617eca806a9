"""A model of another family (Panoptic-DeepLab raw heads, 19 Cityscapes classes, random init)
through ``process-bag`` and the real node: label_info carries the model's names, the family's
thresholds are node parameters with ranges, changeable at run time, and ``--param`` options."""

from __future__ import annotations

import os

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from family_models import pdl19  # noqa: E402,F401  (module-scoped fixture)
from ros_helpers import (  # noqa: E402
    DDS_MARKS,
    ctx,  # noqa: F401  (module-scoped fixture)
    model_node,
    process_bag_outputs,
)
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = DDS_MARKS

from panoptic_ros.core.taxonomy_sources import load_preset  # noqa: E402

CITYSCAPES = [c.name for c in load_preset("cityscapes.yaml")[0].classes]
TAG = f"f{os.getpid()}"


def test_process_bag_runs_a_pdl_model(tmp_path, pdl19, capsys):
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from panoptic_ros.cli import main

    extra = ["--param", "nms_kernel=5", "--param", "top_k=100"]
    bag, outs = process_bag_outputs(tmp_path, pdl19, *extra, capsys=capsys)
    infos, dets = outs["label_info"], outs["detections"]
    assert isinstance(infos[0], LabelInfo) and len(dets) == 3
    assert [c.class_name for c in infos[0].class_map] == CITYSCAPES
    assert all(isinstance(d, Detection2DArray) for d in dets)
    assert sum(len(d.detections) for d in dets) > 0
    rc = main(
        ["process-bag", str(bag), str(tmp_path / "o2"), "--model", str(pdl19)]
        + ["--backend", "onnxruntime", "--param", "nms_kernel=4"]
    )
    assert rc == 2 and "nms_kernel" in capsys.readouterr().err


def test_node_runs_a_pdl_model_with_family_parameters(ctx, pdl19):  # noqa: F811
    from panoptic_ros.core.synthetic import generate_scene

    with model_node(ctx, f"{TAG}_pdl", pdl19, "nms_kernel:=5") as m:
        dets = m.dets
        assert m.label_names() == CITYSCAPES
        img = generate_scene(4242, 96, 128).image
        m.publish_until(img, 5, lambda: dets, 30, "detections")
        desc = m.describe("nms_kernel", "top_k", "center_threshold")
        assert desc[0].integer_range[0].from_value == 1 and desc[0].integer_range[0].to_value == 255
        assert "detectron2" in desc[0].description and not desc[0].read_only
        assert desc[1].integer_range[0].to_value == 10000
        assert m.get("nms_kernel")[0].integer_value == 5  # the launch override, not the default 7
        ok = m.set("top_k", 50)
        assert ok.successful, ok.reason
        bad = m.set("nms_kernel", 4)
        assert not bad.successful and "odd" in bad.reason
        m.publish_until(img, 6, lambda: m.answer(6), 30, "the answer to a frame after set")
        assert m.node.alive()
    assert np.isfinite(len(dets))


def test_process_bag_runs_an_hf_mask2former_folder_exported_with_torchscript(tmp_path, capsys):
    """An optimum-style folder (model.onnx + config.json + preprocessor_config.json) whose
    TorchScript export ONNX Runtime cannot load as written (float64 GridSample grid): the factory
    applies the fix-up, and label_info carries config.json's id2label names."""
    import json

    pytest.importorskip("transformers")
    from hf_models import model_folder

    folder = model_folder("mask2former")
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    _, outs = process_bag_outputs(tmp_path, folder, capsys=capsys)
    assert len(outs["panoptic"]) == 3 and len(outs["detections"]) == 3
    names = [c.class_name for c in outs["label_info"][0].class_map]
    assert names == [id2label[str(i)] for i in range(len(id2label))]


def test_node_runs_an_hf_mask2former_folder(ctx):  # noqa: F811
    """The real node with ``model:=<optimum-style folder>``: label_info from id2label, HF's fusion
    thresholds as node parameters with ranges, a frame answered on every output topic."""
    import json

    pytest.importorskip("transformers")
    from hf_models import model_folder

    from panoptic_ros.core.synthetic import generate_scene

    folder = model_folder("mask2former")
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    with model_node(ctx, f"{TAG}_hf", folder, "mask_score_threshold:=0.3", timeout=120) as m:
        dets = m.dets
        pans = m.tester.collect(Image, f"{m.ns}/panoptic")
        assert m.label_names() == [id2label[str(i)] for i in range(len(id2label))]
        img = generate_scene(4243, 96, 128).image
        m.publish_until(img, 7, lambda: dets and pans, 60, "outputs")
        assert pans[0].header.stamp.sec == dets[0].header.stamp.sec
        assert (pans[0].height, pans[0].width) == (96, 128)
        got = m.get("mask_score_threshold", "overlap_area_threshold")
        assert abs(got[0].double_value - 0.3) < 1e-9 and abs(got[1].double_value - 0.8) < 1e-9
        bad = m.set("mask_threshold", 1.5)
        assert not bad.successful and "mask_threshold" in bad.reason
        assert m.node.alive()
