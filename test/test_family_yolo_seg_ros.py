"""A bare Ultralytics YOLO11n-seg ONNX export (19 custom names, random init) through
``process-bag`` and the real node, no user code: label_info carries the names from the ONNX
metadata, detections come out, and the yolo_* thresholds are node parameters with ranges,
changeable at run time.

Needs the family registry / factory and the bag tools (merged from other branches): skipped
where those modules are absent."""

from __future__ import annotations

import importlib.util
import os

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("panoptic_ros.families.factory")
pytest.importorskip("panoptic_ros.bags.synthetic")

from ros_helpers import (  # noqa: E402
    DDS_MARKS,
    ctx,  # noqa: F401  (module-scoped fixture)
    model_node,
    process_bag_outputs,
)

pytestmark = [
    *DDS_MARKS,
    pytest.mark.skipif(
        importlib.util.find_spec("ultralytics") is None, reason="ultralytics not installed"
    ),
]

NAMES = [f"part_{i}" for i in range(19)]
TAG = f"y{os.getpid()}"


@pytest.fixture(scope="module")
def yolo19(tmp_path_factory):
    import ultralytics_helpers as helpers

    root = tmp_path_factory.mktemp("yolo19")
    helpers.import_ultralytics(root)
    names = dict(enumerate(NAMES))
    return helpers.build_yolo_seg_onnx(root, "yolo11n-seg.yaml", (256, 320), names)


def test_process_bag_runs_a_bare_ultralytics_onnx(tmp_path, yolo19, capsys):
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from panoptic_ros.cli import main

    bag, outs = process_bag_outputs(tmp_path, yolo19, "--param", "yolo_conf=0.2", capsys=capsys)
    infos, dets = outs["label_info"], outs["detections"]
    assert isinstance(infos[0], LabelInfo) and len(dets) == 3
    assert [c.class_name for c in infos[0].class_map] == NAMES
    assert all(isinstance(d, Detection2DArray) for d in dets)
    assert sum(len(d.detections) for d in dets) > 0
    bad = ["process-bag", str(bag), str(tmp_path / "o2"), "--model", str(yolo19)]
    rc = main(bad + ["--backend", "onnxruntime", "--param", "yolo_iou=1.5"])
    assert rc == 2 and "yolo_iou" in capsys.readouterr().err


def test_node_runs_a_bare_ultralytics_onnx(ctx, yolo19):  # noqa: F811
    from panoptic_ros.core.synthetic import generate_scene

    with model_node(ctx, f"{TAG}_yolo", yolo19, "yolo_conf:=0.2") as m:
        dets = m.dets
        assert m.label_names() == NAMES
        img = generate_scene(4242, 96, 128).image
        m.publish_until(img, 5, lambda: dets, 30, "detections")
        assert sum(len(d.detections) for d in dets) > 0
        desc = m.describe("yolo_conf", "yolo_iou", "yolo_max_det")
        assert desc[0].floating_point_range[0].to_value == 1.0 and not desc[0].read_only
        assert desc[2].integer_range[0].from_value == 1
        ok = m.set("yolo_max_det", 3)
        assert ok.successful, ok.reason
        bad = m.set("yolo_conf", 1.5)
        assert not bad.successful and "yolo_conf" in bad.reason
        m.publish_until(img, 6, lambda: m.answer(6), 30, "the answer to a frame after set")
        assert len(m.answer(6).detections) <= 3
        assert m.node.alive()
