"""In-process tests of PanopticNode with a fake Segmenter: parameters, lifecycle, batching.

No subprocess and no model: fast. The DDS end-to-end tests against the installed executable
live in test_node_ros.py.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from panoptic_ros.core.taxonomy import Taxonomy  # noqa: E402
from panoptic_ros.core.types import Instance, PanopticResult  # noqa: E402
from panoptic_ros.ros import params as P  # noqa: E402
from panoptic_ros.ros.node import FAILURE, SUCCESS, PanopticNode  # noqa: E402

pytestmark = pytest.mark.ros

HAVE_CONVERSIONS = (
    importlib.util.find_spec("vision_msgs") is not None
    and importlib.util.find_spec("panoptic_ros.ros.conversions") is not None
)
needs_conversions = pytest.mark.skipif(
    not HAVE_CONVERSIONS, reason="vision_msgs / panoptic_ros.ros.conversions missing"
)


class FakeBackend:
    name, device = "fake", "cpu"

    def __init__(self, max_batch):
        self.max_batch = max_batch


class FakeSegmenter:
    def __init__(self, batch):
        self.backend = FakeBackend(batch)
        self.taxonomy = Taxonomy.default()
        self.calls: list[int] = []
        self.config: dict = {}
        self.family_config: dict = {}
        self.closed = False

    def family_parameters(self):
        return ()

    def update_config(self, **kw):
        if kw.get("min_instance_area", 0) == 12345:
            raise ValueError("min_instance_area 12345 rejected by the pipeline")
        self.config.update(kw)

    def segment_batch(self, images):
        """Two thing instances (ids 1 and 2, class of the first thing) on a stuff background."""
        self.calls.append(len(images))
        thing = self.taxonomy.thing_ids[0]
        out = []
        for im in images:
            h, w = im.shape[:2]
            sem = np.zeros((h, w), np.uint8)
            ins = np.zeros((h, w), np.uint16)
            sem[:2, :2], ins[:2, :2] = thing, 1
            sem[-1:, -2:], ins[-1:, -2:] = thing, 2
            insts = (
                Instance(1, thing, 0.9, (0, 0, 2, 2), 4, (0.5, 0.5)),
                Instance(2, thing, 0.8, (w - 2, h - 1, w, h), 2, (w - 1.5, h - 1.0)),
            )
            pan = self.taxonomy.encode_panoptic(sem, ins)
            out.append(PanopticResult(sem, ins, pan, insts, {"infer": 1.0}))
        return out

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def ctx():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


_made: list = []


def make_node(ctx, factory=None, **overrides):
    seg_holder = {}

    def fake_factory(cfg, batch):
        seg_holder["seg"] = FakeSegmenter(batch)
        return seg_holder["seg"]

    node = PanopticNode(
        f"panoptic_test_{len(_made)}",
        context=ctx,
        segmenter_factory=factory or fake_factory,
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
    )
    _made.append(node)
    return node, seg_holder


def test_parameters_declared_with_descriptors(ctx):
    node, _ = make_node(ctx)
    defaults = P.defaults()
    for name, spec in P.SCHEMA.items():
        assert node.get_parameter(name).value == (
            defaults[name] if spec.type != P.STRING_ARRAY else defaults[name]
        )
        d = node.describe_parameter(name)
        assert d.read_only == spec.read_only and d.description == spec.description
        if spec.type == P.DOUBLE and spec.min is not None:
            assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (
                spec.min,
                spec.max,
            )
        if spec.type == P.INTEGER and spec.min is not None:
            assert d.integer_range[0].from_value == spec.min
    assert node.describe_parameter("cameras").type == ParameterType.PARAMETER_STRING_ARRAY
    node.destroy_node()


def test_runtime_parameter_validation(ctx):
    node, _ = make_node(ctx)
    ok = node.set_parameters([Parameter("center_threshold", value=0.4)])[0]
    assert ok.successful and node.cfg["center_threshold"] == 0.4
    bad = node.set_parameters([Parameter("center_threshold", value=1.5)])[0]
    assert not bad.successful and "center_threshold" in bad.reason and "1.0" in bad.reason
    assert (
        node.get_parameter("center_threshold").value == 0.4 and node.cfg["center_threshold"] == 0.4
    )
    wrong = node.set_parameters([Parameter("stuff_area_min", value="many")])[0]
    assert not wrong.successful and "type" in wrong.reason.lower()
    ro = node.set_parameters([Parameter("backend", value="torch")])[0]
    assert not ro.successful and "read-only" in ro.reason
    node.destroy_node()


def test_bad_override_fails_construction(ctx):
    with pytest.raises(Exception, match="center_threshold"):
        make_node(ctx, center_threshold=3.0)
    node, _ = make_node(ctx, backend="cuda-magic")  # choices are checked at configure
    assert node.trigger_configure() == FAILURE and node.segmenter is None
    node.destroy_node()


def test_configure_failure_is_reported_and_node_stays_unconfigured(ctx):
    from panoptic_ros.backends import BackendError

    def broken(cfg, batch):
        raise BackendError("tensorrt backend needs the 'tensorrt' package")

    node, _ = make_node(ctx, factory=broken)
    assert node.trigger_configure() == FAILURE
    assert node._state_machine.current_state[1] == "unconfigured"
    assert node.segmenter is None
    node.destroy_node()


@needs_conversions
def test_lifecycle_and_batched_cameras(ctx):
    node, seg = make_node(ctx, cameras=["a", "b"])
    assert node.trigger_configure() == SUCCESS
    s = seg["seg"]
    assert s.config["center_threshold"] == P.defaults()["center_threshold"]
    assert node.trigger_activate() == SUCCESS
    assert node.worker.running and node.worker.max_batch == 2
    assert set(node._trackers) == {"a", "b"}  # one tracker per camera
    node.worker.stop()  # drive the worker by hand for a deterministic batch
    node.worker.slots.reopen()
    for cam in ("a", "b"):
        msg = Image(height=4, width=6, encoding="rgb8", step=18, data=bytes(72))
        msg.header.frame_id = cam
        node._on_image(cam, msg)
    node.worker.process(node.worker.slots.take(2, timeout=0))
    assert s.calls == [2]
    assert all(node.stats[c].snapshot().processed == 1 for c in ("a", "b"))
    # a rejected pipeline value leaves the parameter unchanged
    r = node.set_parameters([Parameter("min_instance_area", value=12345)])[0]
    assert not r.successful and "min_instance_area" in r.reason
    # bad frame: counted, worker unaffected
    node._on_image("a", Image(height=4, width=6, encoding="rgb8", step=18, data=bytes(10)))
    node.worker.process(node.worker.slots.take(2, timeout=0))
    assert node.stats["a"].snapshot().bad == 1
    real_pub, node._diag_pub = node._diag_pub, Capture()
    node.publish_diagnostics()  # per camera: the tracker's live tracks and its mean time
    for st in node._diag_pub.msgs[0].status:
        kv = {v.key: v.value for v in st.values}
        assert kv["tracks_live"] == "2" and float(kv["track_mean_ms"]) > 0, kv
    node._diag_pub = real_pub
    node.publish_diagnostics()
    assert node.trigger_deactivate() == SUCCESS and not node._subs
    assert node.trigger_cleanup() == SUCCESS and s.closed and node.segmenter is None
    node.destroy_node()


@needs_conversions
def test_worker_drops_stale_frames(ctx):
    node, seg = make_node(ctx)
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    node.worker.stop()
    for i in range(5):
        node._on_image("", Image(height=2, width=2, encoding="mono8", step=2, data=bytes(4)))
    snap = node.stats[""].snapshot()
    assert snap.received == 5 and snap.dropped == 4
    node.worker.start()
    deadline = time.time() + 5
    while node.stats[""].snapshot().processed < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert node.stats[""].snapshot().processed == 1
    assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
    node.destroy_node()


class Capture:
    def __init__(self, subscribers: int = 1) -> None:
        self.msgs: list = []
        self.subscribers = subscribers

    def publish(self, msg) -> None:
        """Keep the message; serialized images (bytes, as the node publishes them) are
        deserialized as a subscriber would."""
        if isinstance(msg, bytes):
            from rclpy.serialization import deserialize_message

            msg = deserialize_message(msg, Image)
        self.msgs.append(msg)

    def get_subscription_count(self) -> int:
        return self.subscribers


def active_by_hand(node) -> None:
    """Configure and activate ``node``, then stop its worker so a test drives frames itself
    (``node._on_image``, then ``node.worker.process(node.worker.slots.take(...))``)."""
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    node.worker.stop()
    node.worker.slots.reopen()


def capture_outputs(node) -> tuple[dict, dict]:
    """Swap the node's publishers for Captures (overlay unsubscribed, as by default); returns
    the Captures and the real publishers (to put back) by output name."""
    real = node._pubs[""]
    node._pubs[""] = {k: Capture(subscribers=0 if k == "overlay" else 1) for k in real}
    return node._pubs[""], real


@needs_conversions
def test_published_messages_follow_the_contract(ctx):
    node, seg = make_node(ctx, publish_panoptic_rgb=True)
    active_by_hand(node)
    caps, real = capture_outputs(node)
    msg = Image(height=4, width=6, encoding="bgr8", step=20, data=bytes(80))  # padded rows
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = "cam", 12, 345
    node._on_image("", msg)
    node.worker.process(node.worker.slots.take(1, timeout=0))
    for name in ("semantic", "instance", "panoptic", "panoptic_rgb", "detections"):
        (out,) = caps[name].msgs
        assert (out.header.frame_id, out.header.stamp.sec, out.header.stamp.nanosec) == (
            "cam",
            12,
            345,
        ), name
    assert caps["overlay"].msgs == []  # nobody subscribed: not computed
    inst = caps["instance"].msgs[0]
    arr = np.frombuffer(bytes(inst.data), np.uint16).reshape(4, 6)
    assert (
        {int(d.id) for d in caps["detections"].msgs[0].detections}
        == set(np.unique(arr).tolist()) - {0}
        == {1, 2}
    )
    caps["overlay"].subscribers = 1
    node._on_image("", msg)
    node.worker.process(node.worker.slots.take(1, timeout=0))
    assert len(caps["overlay"].msgs) == 1 and caps["overlay"].msgs[0].encoding == "rgb8"
    node._pubs[""] = real
    assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS
    node.destroy_node()


@needs_conversions
def test_published_images_over_dds_equal_the_result(ctx):
    """The node's serialized semantic / instance / panoptic (cdr_image.py) cross real DDS to a
    typed subscription and decode to exactly the arrays of the Segmenter's result."""
    from rclpy.executors import SingleThreadedExecutor

    node, seg = make_node(ctx)
    active_by_hand(node)
    sub = rclpy.create_node(f"panoptic_test_sub_{len(_made)}", context=ctx)
    names = ("semantic", "instance", "panoptic")
    got: dict[str, list] = {n: [] for n in names}
    for n in names:
        sub.create_subscription(Image, node._pubs[""][n].topic_name, got[n].append, 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(sub)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(
        node._pubs[""][n].get_subscription_count() for n in names
    ):
        ex.spin_once(timeout_sec=0.05)
    msg = Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(range(105)))
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = "cam_x", 3, 4
    node._on_image("", msg)
    node.worker.process(node.worker.slots.take(1, timeout=0))
    while time.monotonic() < deadline and not all(got.values()):
        ex.spin_once(timeout_sec=0.05)
    (want,) = seg["seg"].segment_batch([np.zeros((5, 7, 3), np.uint8)])
    dtypes = {"semantic": np.uint8, "instance": np.uint16, "panoptic": np.int32}
    for n in names:
        assert got[n], f"no {n} arrived"
        m = got[n][0]
        assert (m.header.frame_id, m.header.stamp.sec, m.header.stamp.nanosec) == ("cam_x", 3, 4)
        arr = np.frombuffer(bytes(m.data), dtypes[n]).reshape(m.height, m.width)
        assert np.array_equal(arr, getattr(want, n)), n
    ex.shutdown()
    sub.destroy_node()
    assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS


class MovingSegmenter(FakeSegmenter):
    """Frame i (first byte of the image) holds a static thing and one moving right 6 px per
    frame, listed in a different order on odd frames (so per-frame ids swap)."""

    def segment_batch(self, images):
        self.calls.append(len(images))
        thing = self.taxonomy.thing_ids[0]
        out = []
        for im in images:
            i = int(np.asarray(im).reshape(-1)[0])
            h, w = im.shape[:2]
            x = 12 + 6 * (i % 250)
            boxes = [(2, 2, 10, 10), (x, 20, x + 12, 30)]  # static, moving
            if i % 2:
                boxes.reverse()
            if i == 250:  # an inconsistent result: a second object's pixels without a record
                boxes.append((40, 2, 50, 10))
            sem = np.zeros((h, w), np.uint8)
            ins = np.zeros((h, w), np.uint16)
            insts = []
            for k, (x0, y0, x1, y1) in enumerate(boxes, 1):
                sem[y0:y1, x0:x1], ins[y0:y1, x0:x1] = thing, k
                area = (x1 - x0) * (y1 - y0)
                insts.append(
                    Instance(k, thing, 0.9, (x0, y0, x1, y1), area, ((x0 + x1) / 2, (y0 + y1) / 2))
                )
            pan = self.taxonomy.encode_panoptic(sem, ins)
            if i == 250:
                insts.pop()
            out.append(PanopticResult(sem, ins, pan, tuple(insts), {"infer": 1.0}))
        return out


@needs_conversions
def test_track_ids_parameters_and_resets(ctx):
    """Ids follow the objects across frames (detections, instance image, age/hits), tracking
    parameters are run-time and checked, a stamp going back and deactivate reset the tracker."""
    node, seg = make_node(ctx, factory=lambda cfg, batch: MovingSegmenter(batch))
    active_by_hand(node)
    caps, real = capture_outputs(node)
    h, w = 48, 96

    def feed(i, stamp_s):
        data = bytearray(h * w)
        data[0] = i
        msg = Image(height=h, width=w, encoding="mono8", step=w, data=bytes(data))
        msg.header.stamp.sec = stamp_s
        node._on_image("", msg)
        node.worker.process(node.worker.slots.take(1, timeout=0))
        det = caps["detections"].msgs[-1].detections
        inst = np.frombuffer(bytes(caps["instance"].msgs[-1].data), np.uint16).reshape(h, w)
        by_x = {}
        for d in det:  # the static object is the one at x < 12
            key = "static" if d.bbox.center.position.x < 12 else "moving"
            cx, cy = int(d.bbox.center.position.x), int(d.bbox.center.position.y)
            assert inst[cy, cx] == int(d.id)  # mask = (instance == int(det.id))
            cov = d.results[0].pose.covariance
            by_x[key] = (int(d.id), int(cov[0]), int(cov[1]))
        return by_x

    frames = [feed(i, 10 + i) for i in range(6)]
    assert {f["static"][0] for f in frames} == {1} and {f["moving"][0] for f in frames} == {2}
    assert [f["moving"][1:] for f in frames] == [(i, i + 1) for i in range(6)]  # age, hits
    # a result the tracker refuses: that frame is skipped as bad, the node and its tracks go on
    n_det, bad = len(caps["detections"].msgs), node.stats[""].bad
    data = bytearray(h * w)
    data[0] = 250
    msg = Image(height=h, width=w, encoding="mono8", step=w, data=bytes(data))
    msg.header.stamp.sec = 16
    node._on_image("", msg)
    node.worker.process(node.worker.slots.take(1, timeout=0))
    assert len(caps["detections"].msgs) == n_det and node.stats[""].bad == bad + 1
    assert feed(6, 17)["moving"] == (2, 6, 7)

    for name, value in [
        ("tracking_min_iou", 0.0),
        ("tracking_max_age", -1),
        ("tracking_assignment", "auction"),
        ("tracking_similarity", "color"),
    ]:
        r = node.set_parameters([Parameter(name, value=value)])[0]
        assert not r.successful and name in r.reason, (name, r.reason)
    assert node.set_parameters([Parameter("tracking_max_age", value=3)])[0].successful
    assert node._trackers[""].config.max_age == 3

    # a looped bag: the stamp goes back -> new tracks, ages from 0
    again = feed(1, 10)
    assert again["static"][1:] == (0, 1) and again["moving"][1:] == (0, 1)
    assert node._trackers[""].stamp_resets == 1
    # tracking off: per-frame ids in the segmenter's order (odd frame: moving object first)
    assert node.set_parameters([Parameter("tracking", value=False)])[0].successful
    assert feed(3, 20) == {"moving": (1, 0, 0), "static": (2, 0, 0)}  # hits 0: untracked
    assert node.set_parameters([Parameter("tracking", value=True)])[0].successful
    feed(4, 21)
    assert node._trackers[""].live_ids
    node._pubs[""] = real
    assert node.trigger_deactivate() == SUCCESS
    assert node._trackers[""].live_ids == ()
    assert node.trigger_cleanup() == SUCCESS and node._trackers == {}
    node.destroy_node()


def test_unusable_tracker_settings_fail_configure_cleanly(ctx, monkeypatch):
    """tracking_assignment 'hungarian' where scipy is missing (simulated: scipy is installed
    here) fails configure with the reason (params.validate), before the model loads: no ERROR
    transition with publishers left behind."""
    import panoptic_ros.core.tracking as tracking

    node, seg = make_node(ctx, tracking_assignment="hungarian")
    monkeypatch.setattr(tracking, "_have_scipy", lambda: False)
    assert node.trigger_configure() == FAILURE
    assert "seg" not in seg and node._pubs == {}
    monkeypatch.undo()
    assert node.trigger_configure() == SUCCESS and node.trigger_cleanup() == SUCCESS
    node.destroy_node()


def test_taxonomy_without_room_for_track_ids_fails_configure_cleanly(ctx):
    """A model whose taxonomy has label_divisor 1 (allowed by Taxonomy) cannot carry track ids:
    configure fails with the reason and releases the model (it once raised out of on_configure
    after the publishers were made: an ERROR transition, nothing released)."""
    import dataclasses

    made = {}

    def factory(cfg, batch):
        made["seg"] = FakeSegmenter(batch)
        made["seg"].taxonomy = dataclasses.replace(Taxonomy.default(), label_divisor=1)
        return made["seg"]

    node, _ = make_node(ctx, factory=factory)
    assert node.trigger_configure() == FAILURE
    assert node._pubs == {} and node.segmenter is None
    node.destroy_node()
