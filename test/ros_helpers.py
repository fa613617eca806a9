"""Shared pieces of the DDS test modules (imported like ``pq_random``: ``from ros_helpers import ...``).

Import it after ``rclpy = pytest.importorskip("rclpy")``: it needs rclpy, rcl_interfaces and
sensor_msgs (and vision_msgs for :func:`model_node`).

* :class:`NodeProcess`: the installed ``panoptic_node`` started as launch_ros would start it
  (``.venv/bin/panoptic_node --ros-args -r __ns:=... --params-file config/panoptic.yaml -p ...``),
  output captured by a reader thread (:class:`proc_helpers.OutputProcess`), stopped with SIGINT
  (returns the exit code).
* :class:`RosTester`: a plain rclpy node in the test process, spun in a background thread, that
  collects messages and calls services.
* :func:`model_node`: a context manager that starts the node with a model (NodeProcess + RosTester),
  waits for its latched label_info and yields a :class:`ModelNode` that collects detections and
  publishes a frame until answered; the node must exit 0 afterwards.
* :func:`process_bag_outputs`: ``process-bag`` with a model over a small synthetic bag, the
  messages it wrote per output.
* ``DDS_MARKS``: the ``pytestmark`` of a DDS test module.
* ``ctx``: module-scoped fixture (``from ros_helpers import ctx`` puts it in a test module): skips
  without the executable or the default model, else one rclpy Context per module.
* message and parameter helpers: :func:`image_msg`, :func:`stamp_ns`, :func:`pvalue`,
  :func:`from_pvalue`, :func:`param_msg`.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rclpy
from proc_helpers import OutputProcess
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

ROOT = Path(__file__).resolve().parents[1]
# A DDS test module's marks (``pytestmark = DDS_MARKS``): the ``ros`` marker, and a skip where
# vision_msgs (detections, label_info) is not built.
DDS_MARKS = [
    pytest.mark.ros,
    pytest.mark.skipif(
        importlib.util.find_spec("vision_msgs") is None,
        reason="vision_msgs not built (scripts/setup)",
    ),
]
EXE = Path(sys.executable).parent / "panoptic_node"
PARAMS = ROOT / "config" / "panoptic.yaml"
# label_info's QoS (the node publishes it once, latched): a subscriber must ask for the same.
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class NodeProcess(OutputProcess):
    """``panoptic_node`` as launch_ros starts it, in a subprocess; output captured for assertions.

    Command: ``EXE --ros-args -r __ns:=<ns> --params-file config/panoptic.yaml -p backend:=onnxruntime
    <ros_args...>``. SIGINT must give exit 0.
    """

    def __init__(self, ns: str, *ros_args: str) -> None:
        self.ns = ns
        cmd = [
            str(EXE),
            "--ros-args",
            "-r",
            f"__ns:={ns}",
            "--params-file",
            str(PARAMS),
            "-p",
            "backend:=onnxruntime",
            *ros_args,
        ]
        super().__init__(cmd)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (as launch and Ctrl-C send it); the exit status."""
        return self.end(signal.SIGINT, timeout)


class RosTester:
    """A plain rclpy node in this process, spun in a background thread."""

    def __init__(self, ctx, name: str) -> None:
        self.node = rclpy.create_node(name, context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self._stop = False
        self._spin = threading.Thread(target=self._run, daemon=True)
        self._spin.start()

    def _run(self) -> None:
        while not self._stop:
            self.executor.spin_once(timeout_sec=0.05)

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe to ``topic``; the returned list fills with the received messages."""
        box: list = []
        self.node.create_subscription(msg_type, topic, box.append, qos)
        return box

    @staticmethod
    def wait_for(pred, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            future = client.call_async(request)
            self.wait_for(future.done, timeout, f"response from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self._stop = True
        self._spin.join(2)
        self.executor.shutdown()
        self.node.destroy_node()


class ModelNode:
    """A running ``panoptic_node`` with a given model and a :class:`RosTester` wired to it; made by
    :func:`model_node`. ``infos`` / ``dets`` fill with its label_info (latched) and detections."""

    def __init__(self, ns: str, node: NodeProcess, tester: RosTester) -> None:
        from vision_msgs.msg import Detection2DArray, LabelInfo

        self.ns, self.node, self.tester = ns, node, tester
        self.infos = tester.collect(LabelInfo, f"{ns}/label_info", LATCHED)
        self.dets = tester.collect(Detection2DArray, f"{ns}/detections")
        self.pub = tester.node.create_publisher(Image, f"{ns}_in/image_raw", 10)

    def label_names(self) -> list[str]:
        """The class names of the first label_info."""
        return [c.class_name for c in self.infos[0].class_map]

    def publish_until(self, rgb: np.ndarray, stamp: int, pred, timeout: float, what: str) -> None:
        """Publish ``rgb`` (stamp ``stamp`` ns) every poll until ``pred()`` holds (frames are sent
        until answered, so no wait on discovery can be too short)."""
        self.tester.wait_for(
            lambda: self.pub.publish(image_msg(rgb, stamp, "cam")) or pred(), timeout, what
        )

    def answer(self, stamp: int):
        """The detections for the frame stamped ``stamp`` ns (None before it came): frames sent
        every poll queue up, so the last message can answer an earlier frame."""
        return next((d for d in list(self.dets) if stamp_ns(d) == stamp), None)

    def service(self, name: str) -> str:
        """The node's service ``name`` (``get_parameters``, ...)."""
        return f"{self.ns}/panoptic_node/{name}"

    def describe(self, *names: str) -> list:
        """The node's ParameterDescriptors of ``names`` (its describe_parameters service)."""
        req = DescribeParameters.Request(names=list(names))
        return self.tester.call(
            DescribeParameters, self.service("describe_parameters"), req
        ).descriptors

    def get(self, *names: str) -> list:
        """The node's ParameterValues of ``names`` (its get_parameters service)."""
        req = GetParameters.Request(names=list(names))
        return self.tester.call(GetParameters, self.service("get_parameters"), req).values

    def set(self, name: str, value):
        """Set one parameter through the node's set_parameters service; its SetParametersResult."""
        req = SetParameters.Request(parameters=[param_msg(name, value)])
        return self.tester.call(SetParameters, self.service("set_parameters"), req).results[0]


@contextmanager
def model_node(ctx, name: str, model, *params: str, timeout: float = 90.0):
    """``panoptic_node`` under ``/<name>`` with ``model:=<model>``, ``input_qos:=reliable`` and
    ``params`` (``"key:=value"``, each passed with ``-p``); yields a :class:`ModelNode` once its
    label_info arrived (within ``timeout`` s; the test fails with the node's output otherwise).
    On exit the node is stopped with SIGINT and must exit 0."""
    ns = f"/{name}"
    args = ["-r", f"image:={ns}_in/image_raw", "-p", f"model:={model}"]
    for p in params:
        args += ["-p", p]
    node = NodeProcess(ns, *args, "-p", "input_qos:=reliable")
    tester = RosTester(ctx, f"{name}_tester")
    try:
        m = ModelNode(ns, node, tester)
        tester.wait_for(lambda: m.infos or node.proc.poll() is not None, timeout, "label_info")
        assert m.infos, node.output
        yield m
    finally:
        tester.close()
        assert node.stop() == 0


def process_bag_outputs(tmp_path: Path, model, *extra: str, capsys) -> tuple[Path, dict]:
    """``panoptic-ros process-bag --model <model> --backend onnxruntime <extra>`` over a 3-frame
    96x128 synthetic bag (written to ``tmp_path/in``) into ``tmp_path/out``; it must exit 0 (else the
    test fails with its stderr). Returns (the input bag, {"label_info" | "detections" | "panoptic":
    the messages written on ``/camera/<that>``})."""
    from panoptic_ros.bags.messages import deserialize
    from panoptic_ros.bags.reader import BagReader
    from panoptic_ros.bags.synthetic import write_synthetic_bag
    from panoptic_ros.cli import main

    bag = write_synthetic_bag(tmp_path / "in", frames=3, height=96, width=128).path
    out = tmp_path / "out"
    args = ["process-bag", str(bag), str(out), "--model", str(model), "--backend", "onnxruntime"]
    rc = main(args + list(extra))
    assert rc == 0, capsys.readouterr().err
    leaves = ("label_info", "detections", "panoptic")
    with BagReader(out) as r:
        recs = list(r.messages([f"/camera/{leaf}" for leaf in leaves]))
    return bag, {
        leaf: [deserialize(x) for x in recs if x.topic == f"/camera/{leaf}"] for leaf in leaves
    }


@pytest.fixture(scope="module")
def ctx():
    """A fresh rclpy Context per test module (use: ``from ros_helpers import ctx``).

    Skips when the node executable or the default model is missing.
    """
    if not EXE.exists():
        pytest.skip(f"{EXE} not installed (pip install -e .)")
    try:
        from panoptic_ros.families.model_store import load_model_info

        load_model_info("default")
    except Exception:
        pytest.skip("no default model in models/default yet")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam") -> Image:
    """An rgb8 sensor_msgs/Image of ``rgb`` with the given stamp (ns) and frame id."""
    msg = Image(
        height=rgb.shape[0],
        width=rgb.shape[1],
        encoding="rgb8",
        step=rgb.shape[1] * 3,
        data=rgb.tobytes(),
    )
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


def stamp_ns(msg) -> int:
    """The message's header stamp in nanoseconds."""
    from panoptic_ros.ros.conversions import stamp_to_ns

    return stamp_to_ns(msg.header.stamp)


def pvalue(v) -> ParameterValue:
    """Python value -> rcl_interfaces ParameterValue (exact type: 1 is an integer, 1.0 a double)."""
    if v is None:
        return ParameterValue(type=ParameterType.PARAMETER_NOT_SET)
    if isinstance(v, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
    if isinstance(v, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
    if isinstance(v, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
    if isinstance(v, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=v)
    if isinstance(v, list) and all(isinstance(x, float) for x in v):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=v)
    if isinstance(v, bytes):
        return ParameterValue(
            type=ParameterType.PARAMETER_BYTE_ARRAY, byte_array_value=[bytes([b]) for b in v]
        )
    raise TypeError(v)


def from_pvalue(pv: ParameterValue):
    """rcl_interfaces ParameterValue -> Python value (``("type", t)`` for types not mapped here)."""
    t = pv.type
    return {
        ParameterType.PARAMETER_BOOL: lambda: pv.bool_value,
        ParameterType.PARAMETER_INTEGER: lambda: pv.integer_value,
        ParameterType.PARAMETER_DOUBLE: lambda: pv.double_value,
        ParameterType.PARAMETER_STRING: lambda: pv.string_value,
        ParameterType.PARAMETER_STRING_ARRAY: lambda: list(pv.string_array_value),
        ParameterType.PARAMETER_NOT_SET: lambda: None,
    }.get(t, lambda: ("type", t))()


def param_msg(name: str, value) -> ParameterMsg:
    """rcl_interfaces/Parameter ``name`` = ``value`` (typed by :func:`pvalue`)."""
    return ParameterMsg(name=name, value=pvalue(value))
