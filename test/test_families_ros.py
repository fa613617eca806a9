"""A model of another family (Panoptic-DeepLab raw heads, 19 Cityscapes classes, random init)
through ``process-bag`` and the real node: label_info carries the model's names, the family's
thresholds are node parameters with ranges, changeable at run time, and ``--param`` options."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        importlib.util.find_spec("vision_msgs") is None,
        reason="vision_msgs not built (scripts/setup)",
    ),
]

from family_models import pdl_raw_export  # noqa: E402
from ros_helpers import (  # noqa: E402
    NodeProcess,
    RosTester,
    ctx,  # noqa: F401  (module-scoped fixture)
    image_msg,
    param_msg,
)

from panoptic_ros.core.taxonomy_sources import load_preset  # noqa: E402

CITYSCAPES = [c.name for c in load_preset("cityscapes.yaml")[0].classes]
TAG = f"f{os.getpid()}"


@pytest.fixture(scope="module")
def pdl19(tmp_path_factory):
    d = tmp_path_factory.mktemp("pdl19")
    p = pdl_raw_export(d / "pdl19.onnx", num_classes=19, seed=3)
    (d / "classes.yaml").write_text(yaml.safe_dump({"names": CITYSCAPES}))
    return p


def test_process_bag_runs_a_pdl_model(tmp_path, pdl19, capsys):
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from panoptic_ros.bags.messages import deserialize
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.synthetic import write_synthetic_bag
    from panoptic_ros.cli import main

    bag = write_synthetic_bag(tmp_path / "in", frames=3, height=96, width=128)
    rc = main(
        [
            "process-bag",
            str(bag.path),
            str(tmp_path / "out"),
            "--model",
            str(pdl19),
            "--backend",
            "onnxruntime",
            "--param",
            "nms_kernel=5",
            "--param",
            "top_k=100",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    with BagReader(tmp_path / "out") as r:
        recs = list(r.messages(["/camera/label_info", "/camera/detections"]))
    infos = [deserialize(x) for x in recs if x.topic == "/camera/label_info"]
    dets = [deserialize(x) for x in recs if x.topic == "/camera/detections"]
    assert isinstance(infos[0], LabelInfo) and len(dets) == 3
    assert [c.class_name for c in infos[0].class_map] == CITYSCAPES
    assert all(isinstance(d, Detection2DArray) for d in dets)
    assert sum(len(d.detections) for d in dets) > 0
    rc = main(
        ["process-bag", str(bag.path), str(tmp_path / "o2"), "--model", str(pdl19)]
        + ["--backend", "onnxruntime", "--param", "nms_kernel=4"]
    )
    assert rc == 2 and "nms_kernel" in capsys.readouterr().err


def test_node_runs_a_pdl_model_with_family_parameters(ctx, pdl19):  # noqa: F811
    from vision_msgs.msg import Detection2DArray, LabelInfo

    ns = f"/{TAG}_pdl"
    node = NodeProcess(
        ns,
        "-r",
        f"image:={ns}_in/image_raw",
        "-p",
        f"model:={pdl19}",
        "-p",
        "nms_kernel:=5",
        "-p",
        "input_qos:=reliable",
    )
    tester = RosTester(ctx, f"{TAG}_tester_pdl")
    try:
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        infos = tester.collect(LabelInfo, f"{ns}/label_info", latched)
        dets = tester.collect(Detection2DArray, f"{ns}/detections")
        tester.wait_for(lambda: infos or node.proc.poll() is not None, 90, "label_info")
        assert infos, node.output
        assert [c.class_name for c in infos[0].class_map] == CITYSCAPES
        from panoptic_ros.core.synthetic import generate_scene

        pub = tester.node.create_publisher(Image, f"{ns}_in/image_raw", 10)
        img = generate_scene(4242, 96, 128).image
        tester.wait_for(lambda: pub.publish(image_msg(img, 5, "cam")) or dets, 30, "detections")
        srv = f"{ns}/panoptic_node"
        desc = tester.call(
            DescribeParameters,
            f"{srv}/describe_parameters",
            DescribeParameters.Request(names=["nms_kernel", "top_k", "center_threshold"]),
        ).descriptors
        assert desc[0].integer_range[0].from_value == 1 and desc[0].integer_range[0].to_value == 255
        assert "detectron2" in desc[0].description and not desc[0].read_only
        assert desc[1].integer_range[0].to_value == 10000
        got = tester.call(
            GetParameters, f"{srv}/get_parameters", GetParameters.Request(names=["nms_kernel"])
        )
        assert got.values[0].integer_value == 5  # the launch override, not the default 7
        ok = tester.call(
            SetParameters,
            f"{srv}/set_parameters",
            SetParameters.Request(parameters=[param_msg("top_k", 50)]),
        )
        assert ok.results[0].successful, ok.results[0].reason
        bad = tester.call(
            SetParameters,
            f"{srv}/set_parameters",
            SetParameters.Request(parameters=[param_msg("nms_kernel", 4)]),
        )
        assert not bad.results[0].successful and "odd" in bad.results[0].reason
        n = len(dets)
        tester.wait_for(
            lambda: pub.publish(image_msg(img, 6, "cam")) or len(dets) > n, 30, "after set"
        )
        assert node.alive()
    finally:
        tester.close()
        assert node.stop() == 0
    assert np.isfinite(len(dets))


def _process_bag_labels_and_detections(tmp_path, model: str, capsys) -> tuple[list[str], int]:
    """process-bag over a 3-frame synthetic bag with ``model``: (label_info names, detections)."""
    from panoptic_ros.bags.messages import deserialize
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.synthetic import write_synthetic_bag
    from panoptic_ros.cli import main

    bag = write_synthetic_bag(tmp_path / "in", frames=3, height=96, width=128)
    out = tmp_path / "out"
    rc = main(
        ["process-bag", str(bag.path), str(out), "--model", model, "--backend", "onnxruntime"]
    )
    assert rc == 0, capsys.readouterr().err
    with BagReader(out) as r:
        recs = list(r.messages(["/camera/label_info", "/camera/detections", "/camera/panoptic"]))
    infos = [deserialize(x) for x in recs if x.topic == "/camera/label_info"]
    dets = [deserialize(x) for x in recs if x.topic == "/camera/detections"]
    assert len([x for x in recs if x.topic == "/camera/panoptic"]) == 3
    assert len(dets) == 3
    return [c.class_name for c in infos[0].class_map], sum(len(d.detections) for d in dets)


def test_process_bag_runs_an_hf_mask2former_folder_exported_with_torchscript(tmp_path, capsys):
    """An optimum-style folder (model.onnx + config.json + preprocessor_config.json) whose
    TorchScript export ONNX Runtime cannot load as written (float64 GridSample grid): the factory
    applies the fix-up, and label_info carries config.json's id2label names."""
    import json

    pytest.importorskip("transformers")
    from hf_models import model_folder

    folder = model_folder("mask2former")
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    names, _ = _process_bag_labels_and_detections(tmp_path, str(folder), capsys)
    assert names == [id2label[str(i)] for i in range(len(id2label))]


def test_node_runs_an_hf_mask2former_folder(ctx):  # noqa: F811
    """The real node with ``model:=<optimum-style folder>``: label_info from id2label, HF's fusion
    thresholds as node parameters with ranges, a frame answered on every output topic."""
    import json

    pytest.importorskip("transformers")
    from hf_models import model_folder
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from panoptic_ros.core.synthetic import generate_scene

    folder = model_folder("mask2former")
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    ns = f"/{TAG}_hf"
    node = NodeProcess(
        ns,
        "-r",
        f"image:={ns}_in/image_raw",
        "-p",
        f"model:={folder}",
        "-p",
        "mask_score_threshold:=0.3",
        "-p",
        "input_qos:=reliable",
    )
    tester = RosTester(ctx, f"{TAG}_tester_hf")
    try:
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        infos = tester.collect(LabelInfo, f"{ns}/label_info", latched)
        dets = tester.collect(Detection2DArray, f"{ns}/detections")
        pans = tester.collect(Image, f"{ns}/panoptic")
        tester.wait_for(lambda: infos or node.proc.poll() is not None, 120, "label_info")
        assert infos, node.output
        assert [c.class_name for c in infos[0].class_map] == [
            id2label[str(i)] for i in range(len(id2label))
        ]
        pub = tester.node.create_publisher(Image, f"{ns}_in/image_raw", 10)
        img = generate_scene(4243, 96, 128).image
        tester.wait_for(
            lambda: pub.publish(image_msg(img, 7, "cam")) or (dets and pans), 60, "outputs"
        )
        assert pans[0].header.stamp.sec == dets[0].header.stamp.sec
        assert (pans[0].height, pans[0].width) == (96, 128)
        srv = f"{ns}/panoptic_node"
        got = tester.call(
            GetParameters,
            f"{srv}/get_parameters",
            GetParameters.Request(names=["mask_score_threshold", "overlap_area_threshold"]),
        ).values
        assert abs(got[0].double_value - 0.3) < 1e-9 and abs(got[1].double_value - 0.8) < 1e-9
        bad = tester.call(
            SetParameters,
            f"{srv}/set_parameters",
            SetParameters.Request(parameters=[param_msg("mask_threshold", 1.5)]),
        )
        assert not bad.results[0].successful and "mask_threshold" in bad.results[0].reason
        assert node.alive()
    finally:
        tester.close()
        assert node.stop() == 0
