"""Shared pieces of the DDS test modules (imported like ``pq_random``: ``from ros_helpers import ...``).

Import it after ``rclpy = pytest.importorskip("rclpy")``: it needs rclpy, rcl_interfaces and
sensor_msgs.

* :class:`NodeProcess`: the installed ``panoptic_node`` started as launch_ros would start it
  (``.venv/bin/panoptic_node --ros-args -r __ns:=... --params-file config/panoptic.yaml -p ...``),
  output captured by a reader thread, stopped with SIGINT (returns the exit code).
* :class:`RosTester`: a plain rclpy node in the test process, spun in a background thread, that
  collects messages and calls services.
* ``ctx``: module-scoped fixture (``from ros_helpers import ctx`` puts it in a test module): skips
  without the executable or the default model, else one rclpy Context per module.
* message and parameter helpers: :func:`image_msg`, :func:`stamp_ns`, :func:`pvalue`,
  :func:`from_pvalue`, :func:`param_msg`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "panoptic_node"
PARAMS = ROOT / "config" / "panoptic.yaml"


class NodeProcess:
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
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0"),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self._reader.join(5)
        return self.proc.returncode


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
