"""Best-effort 480x640 rgb8 frames between two processes, per Fast DDS transport setting: Fast DDS
defaults, the shipped profile under the variable the Fast DDS in use reads, the built-in
LARGE_DATA transports (FASTDDS_BUILTIN_TRANSPORTS), and on Fast DDS 2.x the shipped profile under
FASTDDS_DEFAULT_PROFILES_FILE (which 2.x ignores). Uses test_dds_profile's publisher/subscriber
scripts. A measurement, not a test (not collected by pytest); the figures are in README "Large frames".

    .venv/bin/python test/measure_fastdds_transports.py REPS FRAMES HZ     # e.g. 3 20 10
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_dds_profile as t

from panoptic_ros.bench.loadgen import ros_env
from panoptic_ros.ros import dds_profile as d

reps, frames, hz = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
wrong = d.FASTDDS_VAR if d.profile_var() == d.FASTRTPS_VAR else None
configs = {
    "fastdds_defaults": {},
    "shipped_xml": d.profile_env(t.PROFILE),
    "LARGE_DATA": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
}
if wrong:
    configs["shipped_xml_under_FASTDDS_var"] = {wrong: str(t.PROFILE)}


def run(extra):
    topic = f"/meas_{os.getpid()}_{time.monotonic_ns()}/image"
    env = ros_env()
    for k in (d.FASTDDS_VAR, d.FASTRTPS_VAR, "FASTDDS_BUILTIN_TRANSPORTS"):
        env.pop(k, None)
    env.update(extra)
    sub = subprocess.Popen(
        [sys.executable, "-c", t.SUBSCRIBER, topic, str(frames), "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert sub.stdout.readline().strip() == "ready"
    pub = subprocess.run(
        [sys.executable, "-c", t.PUBLISHER, topic, str(frames), str(hz)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out, _ = sub.communicate(timeout=30)
    return t._value(out, "received"), ("Error" in pub.stderr + out) or (
        "XMLPARSER" in pub.stderr + out
    )


print(f"Fast DDS {d.fastdds_version()}  {frames} frames at {hz} Hz, {reps} runs each")
for name, extra in configs.items():
    got = [run(extra) for _ in range(reps)]
    print(
        f"{name:32s} received {[g for g, _ in got]} of {frames}  errors={[e for _, e in got]}",
        flush=True,
    )
