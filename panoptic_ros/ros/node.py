"""``panoptic_node``: the managed (lifecycle) rclpy node. A thin shell over ROS-free parts.

Topics (names relative, so ``__ns`` and ``-r`` remapping work as launch_ros users expect)
    cameras: [""] (default, one camera)      cameras: ["front", "rear"]
      in   image                               front/image, rear/image
      out  semantic, instance, panoptic,       front/semantic, ..., rear/label_info
           panoptic_rgb, overlay, detections,
           label_info
    plus /diagnostics (absolute, the ROS convention).
    Remap an input with ``-r image:=/cam/image_raw`` (``-r front/image:=...`` per camera).
    Input type: sensor_msgs/Image, or sensor_msgs/CompressedImage with input_transport:=compressed
    or (input_transport auto) when the resolved input topic ends in ``/compressed``.

Threads: the executor thread only stores each message in its camera's slot (latest frame
wins, displaced frames counted as dropped); one worker thread decodes, runs
``Segmenter.segment_batch`` over the frames ready together (one per camera, up to the
backend's batch) and publishes. Every output carries the input header unchanged.

Lifecycle: configure loads the model (and creates publishers), activate subscribes and starts
the worker (and latches label_info), deactivate stops both, cleanup releases the model.
With ``autostart`` (default) ``main`` configures and activates; a configure failure is logged
once with its cause and the process exits 1. With ``autostart:=false`` the node waits
unconfigured for a lifecycle manager, and a failed configure leaves it unconfigured.

ROS-free logic: params.py (schema, defaults from config/panoptic.yaml, validation),
frame_slots.py (slots, worker), stats.py (rate, latency, counters, log throttle).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble: the same class lives in rclpy.qos_event
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)
from sensor_msgs.msg import CompressedImage, Image

from panoptic_ros.core.frame_slots import Frame, FrameSlots, InferenceWorker
from panoptic_ros.core.stats import CameraStats, Throttle, camera_status
from panoptic_ros.core.tracking import Tracker
from panoptic_ros.ros import dds_profile, input_qos
from panoptic_ros.ros import params as P
from panoptic_ros.ros.conversions import stamp_to_ns
from panoptic_ros.ros.interrupts import Interrupts

_TYPES = {
    P.STRING: ParameterType.PARAMETER_STRING,
    P.BOOL: ParameterType.PARAMETER_BOOL,
    P.INTEGER: ParameterType.PARAMETER_INTEGER,
    P.DOUBLE: ParameterType.PARAMETER_DOUBLE,
    P.STRING_ARRAY: ParameterType.PARAMETER_STRING_ARRAY,
}
OUTPUTS = ("semantic", "instance", "panoptic", "overlay", "detections")
LABEL_OUTPUTS = (
    "semantic",
    "instance",
    "panoptic",
    "detections",
)  # = conversions.LABEL_OUTPUTS (no ROS import here)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def topic(camera: str, leaf: str) -> str:
    """Relative topic of ``leaf`` for ``camera`` ('' = the node namespace itself)."""
    return f"{camera}/{leaf}" if camera else leaf


def descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(
        name=spec.name,
        type=_TYPES[spec.type],
        read_only=spec.read_only,
        description=spec.description,
        additional_constraints=spec.constraints,
    )
    if spec.min is not None and spec.type == P.DOUBLE:
        d.floating_point_range = [
            FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))
        ]
    elif spec.min is not None and spec.type == P.INTEGER:
        d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return d


def _logged(transition: Callable) -> Callable:
    """rclpy turns an exception in a transition into a silent ERROR; log it first."""

    def wrapper(self: PanopticNode, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return transition(self, state)
        except Exception as exc:
            self.get_logger().error(f"{transition.__name__} failed: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.ERROR

    wrapper.__name__ = transition.__name__
    return wrapper


def default_segmenter_factory(cfg: dict[str, Any], batch: int):
    from panoptic_ros.families.factory import segmenter_from_settings

    return segmenter_from_settings(cfg, batch)


class PanopticNode(LifecycleNode):
    def __init__(
        self, name: str = "panoptic_node", *, segmenter_factory: Callable | None = None, **kw: Any
    ) -> None:
        super().__init__(name, **kw)
        self._factory = segmenter_factory or default_segmenter_factory
        defaults = P.defaults()
        for spec in P.SCHEMA.values():
            self.declare_parameter(spec.name, defaults[spec.name], descriptor(spec))
        self.cfg: dict[str, Any] = {n: self.get_parameter(n).value for n in P.SCHEMA}
        self.cfg["cameras"] = list(self.cfg["cameras"])
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.segmenter = None
        self.worker: InferenceWorker | None = None
        self.stats: dict[str, CameraStats] = {}
        self._pubs: dict[str, dict[str, Any]] = {}
        self._subs: dict[str, Any] = {}
        self._in_topics: dict[str, str] = {}
        self._in_types: dict[str, type] = {}
        self._in_qos: dict[str, input_qos.Decision] = {}
        self._in_publishers: dict[str, frozenset] = {}
        self._qos_timer = None
        self._hinted = False
        self._diag_pub = self._diag_timer = None
        self._throttle = Throttle(self.cfg["bad_frame_log_period"])
        self._qos_events: dict[str, int] = {}
        self._shutting_down = False
        self._family_specs: dict[str, P.ParamSpec] = {}  # the model family's thresholds
        self._trackers: dict[str, Tracker] = {}  # per camera, used in the worker thread
        self._track_lock = threading.Lock()  # worker's update vs a parameter change / reset

    # ---- parameters ---------------------------------------------------------------------
    def _on_set_parameters(self, changed: list) -> SetParametersResult:
        """rclpy has checked type, range and read-only; check choices, then apply (all or none)."""
        values = {p.name: list(p.value) if p.name == "cameras" else p.value for p in changed}
        reasons = P.validate_all(values, self._family_specs)
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        track_cfg = None
        if any(k in P.TRACKING_PARAMS for k in values):
            try:
                track_cfg = P.tracker_config({**self.cfg, **values})
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        seg = {
            k: v for k, v in values.items() if k in P.SEGMENTER_PARAMS or k in self._family_specs
        }
        if seg and self.segmenter is not None:
            try:  # Segmenter.update_config is thread-safe; the worker reads the new config next frame
                self.segmenter.update_config(**seg)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        self.cfg.update(values)
        if track_cfg is not None:  # next frame on; toggling `tracking` resets (Tracker.config)
            with self._track_lock:
                for tracker in self._trackers.values():
                    tracker.config = track_cfg
        self._throttle.period = self.cfg["bad_frame_log_period"]
        if "diagnostics_period" in values and self._diag_timer is not None:
            self._start_diag_timer()
        if "publish_panoptic_rgb" in values and self.segmenter is not None:
            self._ensure_panoptic_rgb_pubs()
        if "center_threshold" in values and self.worker is not None and self.worker.running:
            self._publish_label_info()  # LabelInfo.threshold is center_threshold: keep it current
        return SetParametersResult(successful=True)

    # ---- lifecycle ----------------------------------------------------------------------
    @_logged
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = dict(self.cfg)
        bad = P.validate_all(
            cfg
        )  # e.g. an unknown backend name or cameras list from the params file
        if bad:
            self.get_logger().error("configure failed: " + "; ".join(bad))
            return FAILURE
        cams = cfg["cameras"]
        batch = min(len(cams), cfg["max_batch"] or len(cams))
        try:
            from vision_msgs.msg import Detection2DArray, LabelInfo

            from panoptic_ros.ros.conversions import (
                image_msg_to_array,
                label_info_msg,
                result_to_messages,
            )
        except ImportError as exc:
            self.get_logger().error(
                f"configure failed: cannot import message conversions / vision_msgs: {exc}"
            )
            return FAILURE
        self._to_array, self._to_messages = image_msg_to_array, result_to_messages
        self._label_info_msg = label_info_msg
        try:
            try:
                self.segmenter = self._factory(cfg, batch)
            except Exception as exc:
                if batch == 1 or cfg["max_batch"]:
                    raise
                self.get_logger().info(
                    f"batch {batch} unavailable ({exc}); processing cameras in turn"
                )
                batch, self.segmenter = 1, self._factory(cfg, 1)
            self.segmenter.update_config(**{k: cfg[k] for k in P.SEGMENTER_PARAMS})
            self._declare_family_params()
            # the model's taxonomy must leave room for track ids (label_divisor >= 2)
            divisor = self.segmenter.taxonomy.label_divisor
            trackers = {c: Tracker(P.tracker_config(cfg), divisor) for c in cams}
        except Exception as exc:  # BackendError, missing model, bad ONNX: one clear line
            if _INTERRUPTS.received:  # a Ctrl-C that a library turned into this: no false error
                raise KeyboardInterrupt from exc
            self.get_logger().error(
                f"configure failed: cannot load model '{cfg['model']}' with backend '{cfg['backend']}': {exc}"
            )
            self._release_segmenter()
            return FAILURE
        be = self.segmenter.backend
        self.get_logger().info(
            f"model '{cfg['model']}' loaded: backend {be.name} on {be.device}, "
            f"batch {be.max_batch}, cameras {cams}"
        )
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        types = {
            "semantic": Image,
            "instance": Image,
            "panoptic": Image,
            "overlay": Image,
            "detections": Detection2DArray,
        }
        # depth 10, not 5: without the large shared-memory profile a 480x640 output whose first
        # send fails is (likely) repaired on Fast DDS's heartbeat, 3 s by default, and at 2 Hz
        # depth 5 had replaced it by then: 1-2 of 10 lost on some output in 6 of 13 reliable
        # test_input_qos runs with depth 5, none in 10 runs with depth 10.
        for cam in cams:
            self._pubs[cam] = {
                o: self.create_publisher(types[o], topic(cam, o), 10) for o in OUTPUTS
            }
            self._pubs[cam]["label_info"] = self.create_publisher(
                LabelInfo, topic(cam, "label_info"), latched
            )
        self._ensure_panoptic_rgb_pubs()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.stats = {c: CameraStats(cfg["stats_window"]) for c in cams}
        self._trackers = trackers
        self.worker = InferenceWorker(
            FrameSlots(cams),
            decode=self._decode,
            infer=self.segmenter.segment_batch,
            publish=self._track_and_publish,
            on_bad=self._on_bad,
            on_error=self._on_worker_error,
            max_batch=max(1, min(batch, be.max_batch)),
        )
        return SUCCESS

    @_logged
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for cam in self.cfg["cameras"]:
            resolved = self.resolve_topic_name(topic(cam, "image"))
            transport = self.cfg["input_transport"]
            compressed = transport == "compressed" or (
                transport == "auto" and resolved.endswith("/compressed")
            )
            self._in_topics[cam] = resolved
            self._in_types[cam] = CompressedImage if compressed else Image
            self._subscribe(cam, self._decide_input_qos(cam))
        if self.cfg["input_qos"] == "auto":  # follow the publishers (see input_qos.py)
            self._qos_timer = self.create_timer(input_qos.RECHECK_PERIOD, self._recheck_input_qos)
        self.worker.start()
        self._publish_label_info()
        self._start_diag_timer()
        return super().on_activate(state)

    @_logged
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._reset_trackers()  # a re-activation starts new tracks (ids from 1 again)
        return super().on_deactivate(state)

    @_logged
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_all()
        return SUCCESS

    on_shutdown = on_error = on_cleanup  # release everything, whatever the state

    def _declare_family_params(self) -> None:
        """Declare the model family's thresholds (ranges from the family, defaults from its card
        or the library's defaults; a launch ``-p name:=value`` overrides) and apply them."""
        self._family_specs = P.family_param_specs(self.segmenter.family_parameters())
        current = self.segmenter.family_config
        values = {}
        for name, spec in self._family_specs.items():
            if not self.has_parameter(name):
                default = current[name]
                default = int(default) if spec.type == P.INTEGER else float(default)
                self.declare_parameter(name, default, descriptor(spec))
            values[name] = self.get_parameter(name).value
        if values:
            self.segmenter.update_config(**values)
            self.cfg.update(values)

    def _decide_input_qos(self, cam: str, infos: list | None = None) -> input_qos.Decision:
        """``cam``'s input QoS; for auto from its publishers (``infos``: already queried)."""
        if self.cfg["input_qos"] == "auto" and infos is None:
            infos = self.get_publishers_info_by_topic(self._in_topics[cam])
        infos = infos or []
        self._in_publishers[cam] = input_qos.publishers_key(infos)
        return input_qos.decide(self.cfg["input_qos"], [i.qos_profile for i in infos])

    def _subscribe(self, cam: str, decision: input_qos.Decision) -> None:
        """(Re-)create ``cam``'s input subscription with ``decision``'s QoS; log it once."""
        resolved = self._in_topics[cam]
        if cam in self._subs:
            self.destroy_subscription(self._subs.pop(cam))
        self._qos_events.pop(resolved, None)  # a new subscription: past incompatibility is gone
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda e, t=resolved: self._on_incompatible_qos(t, e)
        )
        self._subs[cam] = self.create_subscription(
            self._in_types[cam],
            topic(cam, "image"),
            lambda m, c=cam: self._on_image(c, m),
            decision.profile(),
            event_callbacks=events,
        )
        self._in_qos[cam] = decision
        self.get_logger().info(
            f"camera '{cam}': {resolved} ({self._in_types[cam].__name__}, {decision.describe()})"
        )
        self._hint_best_effort(decision)

    def _hint_best_effort(self, decision: input_qos.Decision) -> None:
        """auto chose best effort for a publisher: once, the profile hint (large frames)."""
        if decision.publishers and not decision.reliable and not self._hinted:
            self._hinted = True
            if not dds_profile.user_profile():
                self.get_logger().info(dds_profile.hint())

    def _recheck_input_qos(self) -> None:
        """Timer (input_qos auto): when a camera's set of publishers changed, decide again and
        re-subscribe if the decision differs."""
        for cam in list(self._subs):
            infos = self.get_publishers_info_by_topic(self._in_topics[cam])
            if input_qos.publishers_key(infos) == self._in_publishers.get(cam):
                continue
            decision = self._decide_input_qos(cam, infos)
            if decision.policies != self._in_qos[cam].policies:
                self._subscribe(cam, decision)
            else:
                self._in_qos[cam] = decision
                self._hint_best_effort(decision)

    def _stop_io(self) -> None:
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        for s in self._subs.values():
            self.destroy_subscription(s)
        self._subs = {}
        self._in_publishers = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self.worker is not None and not self.worker.stop(timeout=30.0):
            self.get_logger().error("inference worker did not stop within 30 s")

    def _release_all(self) -> None:
        """Stop I/O, join the worker, destroy publishers, close the backend. Idempotent."""
        self._shutting_down = True
        self._stop_io()
        self.worker = None
        for pubs in self._pubs.values():
            for pub in pubs.values():
                self.destroy_publisher(pub)
        self._pubs = {}
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._release_segmenter()
        self._trackers = {}
        self._shutting_down = False

    def _release_segmenter(self) -> None:
        if self.segmenter is not None:
            try:
                self.segmenter.close()
            finally:
                self.segmenter = None

    # ---- data path ----------------------------------------------------------------------
    def _on_image(self, cam: str, msg: Any) -> None:
        """Executor thread: store only; conversion happens in the worker."""
        self.stats[cam].on_received()
        if self.worker is not None and self.worker.slots.put(cam, msg):
            self.stats[cam].on_dropped()

    def _decode(self, frame: Frame):
        msg = frame.msg
        if isinstance(msg, Image) and msg.height * msg.width > self.cfg["max_image_pixels"]:
            raise ValueError(
                f"image {msg.width}x{msg.height} exceeds max_image_pixels={self.cfg['max_image_pixels']}"
            )
        img = self._to_array(
            msg, max_pixels=self.cfg["max_image_pixels"]
        )  # declared size checked before decoding
        if img.shape[0] * img.shape[1] > self.cfg["max_image_pixels"]:
            raise ValueError(f"image {img.shape[1]}x{img.shape[0]} exceeds max_image_pixels")
        return img

    def _reset_trackers(self) -> None:
        with self._track_lock:
            for tracker in self._trackers.values():
                tracker.reset()

    def _track_and_publish(self, frame: Frame, img: Any, result: Any, infer_ms: float) -> None:
        """Worker thread: the camera's tracker gives the instances track ids (a stamp earlier
        than the last one resets it: a looped bag), then every output is built from that.
        A result the tracker refuses (ValueError naming the inconsistency) skips this frame
        only, counted and logged as a bad frame: the batch's other cameras still publish."""
        tracker = self._trackers.get(frame.camera)
        if tracker is not None:
            try:
                with self._track_lock:
                    result = tracker.update(result, stamp_to_ns(frame.msg.header.stamp))
                    live = len(tracker.live_ids)
            except ValueError as exc:
                self._on_bad(frame, exc)
                return
            self.stats[frame.camera].on_tracked(live, result.timings.get("track", 0.0))
        self._publish(frame, img, result, infer_ms)

    def _publish(self, frame: Frame, img: Any, result: Any, infer_ms: float) -> None:
        """Build and publish only the outputs someone subscribes to.

        Label images are large (2.1 MB per VGA frame for semantic + instance + panoptic) and
        rclpy serialises every published message even without a subscriber, so an output with
        no subscription is neither built nor published (as the overlay always was). Everything
        published for a frame comes from the same ``result`` with the input header, so
        ``instance`` ids and ``detections`` always agree for a stamp. Images go out serialized
        (``bytes`` from ros/cdr_image.py: one copy of the pixels, no Python message; the same
        bytes rclpy would serialize the Image to), which ``Publisher.publish`` accepts.
        """
        pubs = self._pubs.get(frame.camera)
        if pubs is None:
            return
        outputs = tuple(n for n in LABEL_OUTPUTS if pubs[n].get_subscription_count() > 0)
        want_overlay = self.cfg["publish_overlay"] and pubs["overlay"].get_subscription_count() > 0
        want_rgb = (
            self.cfg["publish_panoptic_rgb"]
            and "panoptic_rgb" in pubs
            and pubs["panoptic_rgb"].get_subscription_count() > 0
        )
        if outputs or want_overlay or want_rgb:
            out = self._to_messages(
                result,
                frame.msg.header,
                self.segmenter.taxonomy,
                image_rgb=img,
                want_overlay=want_overlay,
                want_panoptic_rgb=want_rgb,
                overlay_alpha=self.cfg["overlay_alpha"],
                outputs=outputs,
                serialized=True,
            )
            for name in outputs:
                pubs[name].publish(getattr(out, name))
            if want_overlay and out.overlay is not None:
                pubs["overlay"].publish(out.overlay)
            if want_rgb and out.panoptic_rgb is not None:
                pubs["panoptic_rgb"].publish(out.panoptic_rgb)
        latency_ms = (time.monotonic() - frame.t_received) * 1e3
        self.stats[frame.camera].on_processed(
            latency_ms, float(result.timings.get("infer", infer_ms))
        )

    def _on_bad(self, frame: Frame, exc: Exception) -> None:
        fault = getattr(exc, "fault", type(exc).__name__)
        self.stats[frame.camera].on_bad(f"{fault}: {exc}")
        ok, suppressed = self._throttle.ready((frame.camera, fault))
        if ok:
            more = f" ({suppressed} more since last report)" if suppressed else ""
            self.get_logger().warning(
                f"bad frame on {self._in_topics.get(frame.camera, frame.camera)}: {exc}; "
                f"skipped{more}"
            )

    def _on_worker_error(self, exc: Exception) -> None:
        if not self._shutting_down and rclpy.ok(context=self.context):
            self.get_logger().error(
                f"inference failed: {type(exc).__name__}: {exc}",
                throttle_duration_sec=self.cfg["bad_frame_log_period"],
            )

    def _on_incompatible_qos(self, topic_name: str, event: Any) -> None:
        if self.cfg["input_qos"] == "auto":
            return  # a new publisher: the next check (within RECHECK_PERIOD) re-subscribes to match
        self._qos_events[topic_name] = event.total_count
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self.get_logger().warning(
            f"incompatible QoS on {topic_name}: a publisher cannot serve this subscription "
            f"(policy {policy}, input_qos={self.cfg['input_qos']}); no frames will arrive from it. "
            "Set input_qos to match the publisher (auto follows the publishers, sensor_data "
            "accepts any reliability)."
        )

    def _ensure_panoptic_rgb_pubs(self) -> None:
        if self.cfg["publish_panoptic_rgb"]:
            for cam, pubs in self._pubs.items():
                if "panoptic_rgb" not in pubs:
                    pubs["panoptic_rgb"] = self.create_publisher(
                        Image, topic(cam, "panoptic_rgb"), 10
                    )

    def _publish_label_info(self) -> None:
        from std_msgs.msg import Header

        header = Header(stamp=self.get_clock().now().to_msg())
        for pubs in self._pubs.values():
            pubs["label_info"].publish(
                self._label_info_msg(self.segmenter.taxonomy, header, self.cfg["center_threshold"])
            )

    # ---- diagnostics --------------------------------------------------------------------
    def _start_diag_timer(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(
            self.cfg["diagnostics_period"], self.publish_diagnostics
        )

    def publish_diagnostics(self) -> None:
        if self._diag_pub is None or self.segmenter is None or not rclpy.ok(context=self.context):
            return  # not active, or shutting down (publishing on a shut-down context raises)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        be = self.segmenter.backend
        for cam, st in self.stats.items():
            snap = st.snapshot()
            in_topic = self._in_topics.get(cam, topic(cam, "image"))
            level, message = camera_status(
                snap,
                active=self.worker is not None and self.worker.running,
                input_topic=in_topic,
                qos_incompatible=bool(self._qos_events.get(in_topic)),
            )
            values = [
                ("camera", cam or "(default)"),
                ("input_topic", in_topic),
                ("backend", be.name),
                ("device", str(be.device)),
                *snap.as_pairs(),
            ]
            arr.status.append(
                DiagnosticStatus(
                    level=bytes([level]),
                    name=f"{self.get_fully_qualified_name()}: {cam or 'image'}",
                    message=message,
                    hardware_id=str(be.device),
                    values=[KeyValue(key=k, value=v) for k, v in values],
                )
            )
        self._diag_pub.publish(arr)


#: SIGINT/SIGTERM of the running node (ros/interrupts.py): ``received`` ends main()'s spin loop
#: also where the KeyboardInterrupt was swallowed (a library's try/except) or turned into
#: another exception (rclpy's message conversion)
_INTERRUPTS = Interrupts()

#: how long the spin loop waits for work before it looks at ``_INTERRUPTS`` (bounds the stop latency)
SPIN_POLL_S = 0.1


def main(args: list[str] | None = None) -> int:
    """Entry point of ``panoptic_node``: SIGINT/SIGTERM -> exit 0 with the worker joined and backend closed.

    Signals: rclpy's own handler shuts the context down from a separate thread, under whatever
    the node is doing: model load, configure, activate at start-up, or a transition a lifecycle
    manager requested over ``change_state`` while spinning. Every rcl call that follows fails and
    logs ("context is invalid", "Failed to publish log message to rosout", a transition left in
    errorprocessing, an exit 1 when it hits the node's constructor). So rclpy's handlers are never
    installed: SIGINT/SIGTERM raise KeyboardInterrupt in this thread (a clean stop with a valid
    context) and are remembered (``_INTERRUPTS``); the spin waits at most ``SPIN_POLL_S`` per
    round, so the signal is seen without rclpy's wake-up. Whatever exception follows a signal
    (e.g. the RuntimeError rclpy's message conversion turns a KeyboardInterrupt into) is the stop:
    exit 0. ``finally`` releases the node and shuts rclpy down (which joins rclpy's signal
    thread) on every path."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    try:  # rcl reads --params-file (any file it accepts); values are validated once declared
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # RCLError: unreadable params file, bad --ros-args: one clear line
        print(f"panoptic_node: {P.describe_rcl_init_error(str(exc))}", file=sys.stderr)
        return 2
    node = None
    rc = 0
    try:
        # not put back: ``finally`` ignores both signals while it releases, then the process ends
        _INTERRUPTS.install()
        node = PanopticNode()
        if node.cfg["input_qos"] == "sensor_data" and not dds_profile.user_profile():
            node.get_logger().info(
                dds_profile.hint()
            )  # large frames over best effort: see the shipped profile
        if node.cfg["autostart"]:
            if node.trigger_configure() != SUCCESS or node.trigger_activate() != SUCCESS:
                if _INTERRUPTS.received or not rclpy.ok(context=node.context):
                    return 0  # SIGINT/SIGTERM during start-up: a clean stop (finally releases)
                node.get_logger().error("autostart failed (see the error above); exiting")
                rc = 1
        if rc == 0:
            executor = SingleThreadedExecutor(context=node.context)
            executor.add_node(node)
            while not _INTERRUPTS.received and rclpy.ok(context=node.context):
                executor.spin_once(timeout_sec=SPIN_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # bad parameter override etc.: one clear line, non-zero exit
        if _INTERRUPTS.received or not rclpy.ok(context=node.context if node is not None else None):
            pass  # the signal surfaced as another exception, or a callback raced it: clean stop
        else:
            print(f"panoptic_node: {type(exc).__name__}: {exc}", file=sys.stderr)
            rc = 1
    finally:
        # a second signal must not cut the release short
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            node._release_all()
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
