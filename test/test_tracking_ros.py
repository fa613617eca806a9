"""Track ids over real DDS: the installed panoptic_node with the default model on a synthetic
video (moving, entering, leaving, occluding objects) keeps ids on the objects, and gives exactly
the ids process-bag writes for the same frames in the same order (issue 18)."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_helpers import DDS_MARKS, ctx, image_msg, model_node, stamp_ns  # noqa: E402, F401

pytestmark = DDS_MARKS

H, W, FRAMES = 240, 320, 12
T0 = 1_700_000_000_000_000_000
DT = 100_000_000  # 10 Hz stamps


@pytest.fixture(scope="module")
def sequence():
    from panoptic_ros.core import synthetic_video

    return synthetic_video.generate_sequence(synthetic_video.sequence_seeds(12)[11], FRAMES, H, W)


def _bag(path, sequence):
    from panoptic_ros.bags.synthetic import image_message
    from panoptic_ros.bags.writer import BagWriter

    with BagWriter(path, "mcap") as w:
        for i, f in enumerate(sequence.frames):
            t = T0 + i * DT
            w.write_msg("/camera/image_raw", image_message(f.image, t, "camera", "rgb8"), t)
    return path


def _summary(dets, inst: np.ndarray) -> list[tuple]:
    """(id, class, bbox, age, hits) per detection, each checked against its instance pixels."""
    out = []
    for d in dets.detections:
        tid = int(d.id)
        cov = d.results[0].pose.covariance
        x0 = round(d.bbox.center.position.x - d.bbox.size_x / 2)
        y0 = round(d.bbox.center.position.y - d.bbox.size_y / 2)
        x1, y1 = x0 + round(d.bbox.size_x), y0 + round(d.bbox.size_y)
        ys, xs = np.nonzero(inst == tid)  # the documented mapping: mask = instance == int(id)
        assert xs.size and (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        out.append((tid, d.results[0].hypothesis.class_id, (x0, y0, x1, y1), cov[0], cov[1]))
    return out


def _image(msg) -> np.ndarray:
    """A 16UC1 (instance) or 32SC1 (panoptic) label image as an array."""
    dtype = {"16UC1": np.uint16, "32SC1": np.int32}[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    return rows[:, : msg.width * dt.itemsize].copy().view(dt).astype(dtype)


def _id_switches(sequence, pan_frames: list[np.ndarray]) -> tuple[int, int]:
    from panoptic_ros.evaluation.video import IdSwitches

    ids = IdSwitches(sequence.taxonomy)
    for f, pan in zip(sequence.frames, pan_frames):
        ids.update(f.panoptic, pan, sequence.seed)
    r = ids.compute()
    return r.id_switches, r.gt_track_frames


def test_node_ids_are_stable_and_equal_process_bag(ctx, tmp_path, sequence):  # noqa: F811
    from sensor_msgs.msg import Image

    from panoptic_ros.bags.messages import deserialize
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.cli import process_bag as pb
    from panoptic_ros.ros import params as P

    # process-bag over the bag (threads 1 on both sides: bit-identical inference)
    cfg = pb.load_settings(None, "default", "onnxruntime")
    cfg["threads"] = 1
    seg = pb.make_segmenter(cfg)
    try:
        pb.process_bag(
            _bag(tmp_path / "in", sequence),
            tmp_path / "out",
            segmenter=seg,
            tracking=P.tracker_config(cfg),
            log=lambda s: None,
        )
    finally:
        seg.close()
    with BagReader(tmp_path / "out") as r:
        recs = list(r.messages(["/camera/detections", "/camera/instance", "/camera/panoptic"]))
    bag_out = {
        leaf: {stamp_ns(m): m for m in (deserialize(x) for x in recs if x.topic.endswith(leaf))}
        for leaf in ("detections", "instance", "panoptic")
    }
    assert len(bag_out["detections"]) == FRAMES

    with model_node(ctx, "t_track_ros", "default", "threads:=1") as m:
        inst_msgs = m.tester.collect(Image, f"{m.ns}/instance")
        pan_msgs = m.tester.collect(Image, f"{m.ns}/panoptic")
        # discovery: a black frame until answered, then a reset through the parameter so the
        # sequence starts on a fresh tracker whatever copies of it were processed
        black = np.zeros((H, W, 3), np.uint8)
        m.publish_until(black, T0 - DT, lambda: m.answer(T0 - DT), 60, "the first answer")
        time.sleep(1.0)  # copies still queued are processed before the reset
        assert m.set("tracking", False).successful and m.set("tracking", True).successful
        # the frames in order, each once, the next only after the node answered (no drops)
        for i, f in enumerate(sequence.frames):
            t = T0 + i * DT
            m.pub.publish(image_msg(f.image, t, "camera"))
            m.tester.wait_for(
                lambda t=t: (
                    m.answer(t)
                    and any(stamp_ns(x) == t for x in list(inst_msgs))
                    and any(stamp_ns(x) == t for x in list(pan_msgs))
                ),
                60,
                f"the node's outputs for frame {i}",
            )
        node_dets = {stamp_ns(d): d for d in list(m.dets)}
        node_inst = {stamp_ns(x): x for x in list(inst_msgs)}
        node_pan = {stamp_ns(x): x for x in list(pan_msgs)}

    stamps = [T0 + i * DT for i in range(FRAMES)]
    for i, t in enumerate(stamps):
        a_inst, b_inst = _image(node_inst[t]), _image(bag_out["instance"][t])
        node_sum = _summary(node_dets[t], a_inst)
        assert node_sum == _summary(bag_out["detections"][t], b_inst), f"frame {i}"
        assert np.array_equal(a_inst, b_inst), f"frame {i}: instance images differ"
        assert np.array_equal(_image(node_pan[t]), _image(bag_out["panoptic"][t])), f"frame {i}"
    # the ids follow the objects: far fewer switches than per-frame ids, and ages grow
    tracked = [_image(node_pan[t]) for t in stamps]
    per_frame = []
    for p in tracked:  # the same frames with per-frame ids 1..N (what tracking off publishes)
        q = p.copy()
        things = np.unique(p[(p >= 0) & (p % sequence.taxonomy.label_divisor > 0)])
        for k, v in enumerate(things, 1):
            q[p == v] = (v // sequence.taxonomy.label_divisor) * sequence.taxonomy.label_divisor + k
        per_frame.append(q)
    sw_on, n = _id_switches(sequence, tracked)
    sw_off, _ = _id_switches(sequence, per_frame)
    print(
        f"\nnode on {FRAMES} frames: {sw_on} id switches with tracking, {sw_off} per-frame ids, {n} GT track-frames"
    )
    assert sw_on * 100 <= 2 * n and sw_on < sw_off
    ages = [a for t in stamps for (_, _, _, a, _) in _summary(node_dets[t], _image(node_inst[t]))]
    assert max(ages) >= FRAMES - 2
