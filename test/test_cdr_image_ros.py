"""Every label image the real node publishes as serialized CDR bytes (ros/cdr_image.py) arrives
over DDS as the message the Python message path (``result_to_messages(serialized=False)``) builds
for the same frame: semantic (mono8, and 16UC1 for a model with > 254 classes), instance,
panoptic, panoptic_rgb and overlay, pixel for pixel, with the input header.

The reference is computed in this process with the node's own Segmenter settings
(``segmenter_from_settings``) on the same frame; tracking is off in the node so the instance and
panoptic ids are the model's per-frame ids the reference has too.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from family_models import raw_heads_onnx  # noqa: E402
from ros_helpers import (  # noqa: E402
    DDS_MARKS,
    ctx,  # noqa: F401  (module-scoped fixture)
    model_node,
    stamp_ns,
)
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = DDS_MARKS
TAG = f"cr{os.getpid()}"
IMAGES = ("semantic", "instance", "panoptic", "panoptic_rgb", "overlay")


def _model(kind: str, tmp_path) -> str:
    if kind == "default":
        return "default"
    names = [f"class_{i}" for i in range(300)]  # > 254 classes: semantic goes out as 16UC1
    p = raw_heads_onnx(tmp_path / "m300.onnx", 300, size=(48, 64), seed=5)
    classes = [{"id": i, "name": n, "is_thing": i % 3 == 0} for i, n in enumerate(names)]
    (tmp_path / "classes.yaml").write_text(
        yaml.safe_dump({"label_divisor": 1000, "classes": classes})
    )
    return str(p)


def _reference(model: str, rgb: np.ndarray, header):
    from panoptic_ros.families.factory import segmenter_from_settings
    from panoptic_ros.ros import conversions as conv
    from panoptic_ros.ros import params as P

    cfg = {**P.defaults(), "model": model, "backend": "onnxruntime"}
    seg = segmenter_from_settings(cfg, 1)
    try:
        seg.update_config(**{k: cfg[k] for k in P.SEGMENTER_PARAMS})
        res = seg.segment(rgb)
        return conv.result_to_messages(
            res,
            header,
            seg.taxonomy,
            image_rgb=rgb,
            want_overlay=True,
            want_panoptic_rgb=True,
            overlay_alpha=cfg["overlay_alpha"],
            outputs=("semantic", "instance", "panoptic"),
        )
    finally:
        seg.close()


@pytest.mark.parametrize("kind", ["default", "300_classes"])
def test_node_images_equal_the_message_path(ctx, tmp_path, kind):  # noqa: F811
    from panoptic_ros.core.synthetic import generate_scene

    model = _model(kind, tmp_path)
    rgb = generate_scene(777, 96, 128).image
    with model_node(
        ctx, f"{TAG}_{kind}", model, "tracking:=false", "publish_panoptic_rgb:=true"
    ) as m:
        boxes = {o: m.tester.collect(Image, f"{m.ns}/{o}") for o in IMAGES}
        stamp = 1_700_000_123_000_000_456

        def arrived():
            return all(any(stamp_ns(x) == stamp for x in list(boxes[o])) for o in IMAGES)

        m.publish_until(rgb, stamp, arrived, 60, "every image output for the frame")
        got = {o: next(x for x in list(boxes[o]) if stamp_ns(x) == stamp) for o in IMAGES}
        assert m.node.alive()
    ref = _reference(model, rgb, got["semantic"].header)
    assert got["semantic"].encoding == ("16UC1" if kind == "300_classes" else "mono8")
    for o in IMAGES:
        want, have = getattr(ref, o), got[o]
        fields = ("height", "width", "encoding", "is_bigendian", "step")
        assert [getattr(have, f) for f in fields] == [getattr(want, f) for f in fields], o
        assert have.header.frame_id == "cam", o
        assert bytes(have.data) == bytes(want.data), o
