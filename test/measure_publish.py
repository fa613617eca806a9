"""Where a frame's publish time goes: one 480x640 frame's outputs (semantic mono8, instance 16UC1,
panoptic 32SC1 as serialized bytes, detections as a message) published to the bench's subscriber
process, the order rotated each frame, timed per output and per position in the frame. A
measurement, not a test (not collected by pytest); the figures are in docs/performance.md
"Publish path". Run with ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST set.

    .venv/bin/python test/measure_publish.py FRAMES GAP_MS     # e.g. 300 5
"""

import os
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_conversions import header, make_result

from panoptic_ros.bench.loadgen import ros_env
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.ros import conversions as conv

frames, gap = int(sys.argv[1]), float(sys.argv[2]) / 1e3
rclpy.init()
node = rclpy.create_node(f"measure_publish_{os.getpid()}")
qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
ns = f"/measure_publish_{os.getpid()}"
types = {"semantic": Image, "instance": Image, "panoptic": Image, "detections": Detection2DArray}
pubs = {k: node.create_publisher(t, f"{ns}/{k}", qos) for k, t in types.items()}
specs = [f"{ns}/{k}={t.__module__}:{t.__name__}" for k, t in types.items()]
sink = subprocess.Popen(
    [sys.executable, "-m", "panoptic_ros.bench.loadgen", "sink", *specs],
    env=ros_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
while not all(p.get_subscription_count() for p in pubs.values()):
    time.sleep(0.05)
time.sleep(1.0)
tax = Taxonomy.default()
res = make_result(tax, 480, 640)
samples: dict[str, list[float]] = {}
for i in range(frames):
    out = conv.result_to_messages(res, header(), tax, serialized=True)
    order = list(types)[i % 4 :] + list(types)[: i % 4]
    for pos, k in enumerate(order):
        t0 = time.perf_counter()
        pubs[k].publish(getattr(out, k))
        ms = (time.perf_counter() - t0) * 1e3
        if i >= 20:
            samples.setdefault(f"output {k}", []).append(ms)
            samples.setdefault(f"position {pos}", []).append(ms)
    time.sleep(gap)
for k, v in samples.items():
    print(f"{k:20s} median {np.median(v):.3f} ms  mean {np.mean(v):.3f} ms")
sink.terminate()
sink.wait()
