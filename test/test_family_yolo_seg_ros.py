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

from rcl_interfaces.srv import DescribeParameters, SetParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        importlib.util.find_spec("vision_msgs") is None,
        reason="vision_msgs not built (scripts/setup)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("ultralytics") is None, reason="ultralytics not installed"
    ),
]

from ros_helpers import (  # noqa: E402
    NodeProcess,
    RosTester,
    ctx,  # noqa: F401  (module-scoped fixture)
    image_msg,
    param_msg,
)

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

    from panoptic_ros.bags.messages import deserialize
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.synthetic import write_synthetic_bag
    from panoptic_ros.cli import main

    bag = write_synthetic_bag(tmp_path / "in", frames=3, height=96, width=128)
    args = ["process-bag", str(bag.path), str(tmp_path / "out"), "--model", str(yolo19)]
    rc = main(args + ["--backend", "onnxruntime", "--param", "yolo_conf=0.2"])
    assert rc == 0, capsys.readouterr().err
    with BagReader(tmp_path / "out") as r:
        recs = list(r.messages(["/camera/label_info", "/camera/detections"]))
    infos = [deserialize(x) for x in recs if x.topic == "/camera/label_info"]
    dets = [deserialize(x) for x in recs if x.topic == "/camera/detections"]
    assert isinstance(infos[0], LabelInfo) and len(dets) == 3
    assert [c.class_name for c in infos[0].class_map] == NAMES
    assert all(isinstance(d, Detection2DArray) for d in dets)
    assert sum(len(d.detections) for d in dets) > 0
    bad = ["process-bag", str(bag.path), str(tmp_path / "o2"), "--model", str(yolo19)]
    rc = main(bad + ["--backend", "onnxruntime", "--param", "yolo_iou=1.5"])
    assert rc == 2 and "yolo_iou" in capsys.readouterr().err


def test_node_runs_a_bare_ultralytics_onnx(ctx, yolo19):  # noqa: F811
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from panoptic_ros.core.synthetic import generate_scene

    ns = f"/{TAG}_yolo"
    node = NodeProcess(
        ns,
        "-r",
        f"image:={ns}_in/image_raw",
        "-p",
        f"model:={yolo19}",
        "-p",
        "yolo_conf:=0.2",
        "-p",
        "input_qos:=reliable",
    )
    tester = RosTester(ctx, f"{TAG}_tester_yolo")
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
        assert [c.class_name for c in infos[0].class_map] == NAMES
        pub = tester.node.create_publisher(Image, f"{ns}_in/image_raw", 10)
        img = generate_scene(4242, 96, 128).image
        tester.wait_for(lambda: pub.publish(image_msg(img, 5, "cam")) or dets, 30, "detections")
        assert sum(len(d.detections) for d in dets) > 0
        srv = f"{ns}/panoptic_node"
        desc = tester.call(
            DescribeParameters,
            f"{srv}/describe_parameters",
            DescribeParameters.Request(names=["yolo_conf", "yolo_iou", "yolo_max_det"]),
        ).descriptors
        assert desc[0].floating_point_range[0].to_value == 1.0 and not desc[0].read_only
        assert desc[2].integer_range[0].from_value == 1
        ok = tester.call(
            SetParameters,
            f"{srv}/set_parameters",
            SetParameters.Request(parameters=[param_msg("yolo_max_det", 3)]),
        )
        assert ok.results[0].successful, ok.results[0].reason
        bad = tester.call(
            SetParameters,
            f"{srv}/set_parameters",
            SetParameters.Request(parameters=[param_msg("yolo_conf", 1.5)]),
        )
        assert not bad.results[0].successful and "yolo_conf" in bad.results[0].reason
        n = len(dets)
        tester.wait_for(
            lambda: pub.publish(image_msg(img, 6, "cam")) or len(dets) > n, 30, "after set"
        )
        assert len(dets[-1].detections) <= 3
        assert node.alive()
    finally:
        tester.close()
        assert node.stop() == 0
