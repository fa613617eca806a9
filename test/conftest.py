"""Test-session settings shared by every test module.

DDS isolation: each pytest run gets its own ROS_DOMAIN_ID and
keeps discovery on this host, so parallel runs and leftover processes never cross-talk.
Set PANOPTIC_TEST_DOMAIN_ID to pin the domain.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault(
    "ROS_DOMAIN_ID", os.environ.get("PANOPTIC_TEST_DOMAIN_ID", str(1 + os.getpid() % 100))
)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


@pytest.fixture()
def rclpy_global():
    """rclpy initialised in its default context for one test (in-process recorders such as
    ``TopicRecorder`` use the default context), shut down after it."""
    import rclpy

    rclpy.init(args=[])
    yield
    rclpy.try_shutdown()
