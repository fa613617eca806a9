"""Parameter abuse at run time against the running ``panoptic_node`` over DDS (issue #8).

Each bad value goes through the real ``/<node>/set_parameters`` service (rcl_interfaces/srv/
SetParameters) and must be rejected with a reason; ``get_parameters`` then reads the old value
back, and the node keeps publishing outputs for new frames. A good change afterwards is applied.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically  # noqa: E402
from ros_helpers import (  # noqa: E402
    DDS_MARKS,
    NodeProcess,
    RosTester,
    ctx,  # noqa: E402,F401  (module-scoped fixture)
    from_pvalue,
    image_msg,
    param_msg,
    stamp_ns,
)
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = DDS_MARKS

TAG = f"rp{os.getpid()}"
CALL_TIMEOUT = 15.0  # parameter service calls


@pytest.fixture(scope="module")
def running(ctx):
    ns = f"/{TAG}"
    fq = f"{ns}/panoptic_node"
    node = NodeProcess(
        ns, "-p", "threads:=1", "-r", f"image:={ns}/cam", "-p", "input_qos:=reliable"
    )
    tester = RosTester(ctx, f"{TAG}_tester")
    sem = tester.collect(Image, f"{ns}/semantic")
    pub = tester.node.create_publisher(Image, f"{ns}/cam", 10)
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    s = {
        "node": node,
        "tester": tester,
        "fq": fq,
        "sem": sem,
        "pub": pub,
        "rgb": rgb,
        "stamp": 1000,
    }
    deadline = time.monotonic() + 90
    while not sem:  # ready once a probe frame comes back
        assert node.alive(), f"node exited:\n{node.output}"
        assert time.monotonic() < deadline, f"node produced no output:\n{node.output}"
        pub.publish(image_msg(rgb, 1))
        time.sleep(0.3)
    yield s
    tester.close()
    rc = node.stop()
    assert rc == 0, f"node exit code {rc}:\n{node.output}"


def get_params(s, names: list[str]) -> dict:
    res = s["tester"].call(
        GetParameters,
        f"{s['fq']}/get_parameters",
        GetParameters.Request(names=names),
        timeout=CALL_TIMEOUT,
    )
    return {n: from_pvalue(v) for n, v in zip(names, res.values)}


def set_param(s, name: str, value):
    req = SetParameters.Request(parameters=[param_msg(name, value)])
    res = s["tester"].call(SetParameters, f"{s['fq']}/set_parameters", req, timeout=CALL_TIMEOUT)
    assert len(res.results) == 1
    return res.results[0]


def still_publishing(s) -> None:
    """A new frame (unique stamp) comes back on 'semantic' with that stamp."""
    s["stamp"] += 1
    stamp = s["stamp"] * 10**6
    box = s["sem"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert s["node"].alive(), s["node"].output
        s["pub"].publish(image_msg(s["rgb"], stamp))
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            if any(stamp_ns(m) == stamp for m in list(box)):
                return
            time.sleep(0.02)
    raise AssertionError(
        f"no output for stamp {stamp} after parameter abuse:\n{s['node'].output[-3000:]}"
    )


#: (parameter, bad value, words the reason must contain (any of))
ABUSE = [
    ("center_threshold", 1.5, ["range", "center_threshold"]),
    ("center_threshold", 0.0, ["range", "center_threshold"]),  # (0, 1]: zero excluded by the schema
    ("center_threshold", -0.1, ["range"]),
    ("center_threshold", math.nan, ["finite", "range"]),
    ("center_threshold", math.inf, ["finite", "range"]),
    ("center_threshold", "abc", ["type"]),
    ("center_threshold", 1, ["type"]),  # integer for a double
    ("center_threshold", True, ["type"]),
    ("center_threshold", [0.1, 0.2], ["type"]),
    (
        "center_threshold",
        None,
        ["type", "not set", "undeclare", "read"],
    ),  # NOT_SET must not delete it
    ("stuff_area_min", -1, ["range"]),
    ("stuff_area_min", 2.5, ["type"]),
    ("min_instance_area", "16", ["type"]),
    ("overlay_alpha", 1.01, ["range"]),
    ("diagnostics_period", 0.0, ["range"]),
    ("diagnostics_period", 1e12, ["range"]),
    ("bad_frame_log_period", -1.0, ["range"]),
    ("publish_overlay", "yes", ["type"]),
    ("publish_panoptic_rgb", 1, ["type"]),
    # read-only: loaded at configure
    ("backend", "warp_drive", ["read-only", "read only"]),
    ("backend", "torch", ["read-only", "read only"]),
    ("model", "/tmp/other_model", ["read-only", "read only"]),
    ("device", "cuda:7", ["read-only", "read only"]),
    ("precision", "int8", ["read-only", "read only"]),  # a new graph: loaded at configure
    ("cameras", ["a", "b"], ["read-only", "read only"]),
    ("max_image_pixels", 1, ["read-only", "read only"]),
    ("input_qos", "reliable", ["read-only", "read only"]),
    ("autostart", False, ["read-only", "read only"]),
    # not a parameter of this node
    ("no_such_parameter", 1.0, ["not declared", "undeclared", "unknown"]),
    ("", 1.0, ["name", "invalid", "not declared", "undeclared", "unknown"]),
]


def test_parameter_abuse_rejected_old_value_kept(running):
    s = running
    names = sorted({n for n, _, _ in ABUSE if n and n != "no_such_parameter"})
    before = get_params(s, names)
    problems = []
    for name, value, words in ABUSE:
        r = set_param(s, name, value)
        if r.successful:
            problems.append(f"{name}={value!r} was ACCEPTED")
            continue
        if not r.reason or not any(w in r.reason.lower() for w in words):
            problems.append(f"{name}={value!r}: reason {r.reason!r} lacks any of {words}")
        now = get_params(s, names)
        if now != before:
            changed = {k: (before[k], now[k]) for k in names if before[k] != now[k]}
            problems.append(f"{name}={value!r}: values changed {changed}")
            before = now
    assert s["node"].alive(), s["node"].output
    assert not problems, "\n".join(problems)
    print(f"parameter abuse: {len(ABUSE)} bad sets rejected, old values kept")
    still_publishing(s)


def test_atomic_set_all_or_nothing(running):
    s = running
    before = get_params(s, ["center_threshold", "stuff_area_min"])
    req = SetParametersAtomically.Request(
        parameters=[
            param_msg("center_threshold", 0.33),
            param_msg("stuff_area_min", -5),
        ]
    )
    res = s["tester"].call(
        SetParametersAtomically, f"{s['fq']}/set_parameters_atomically", req, timeout=CALL_TIMEOUT
    )
    assert not res.result.successful and res.result.reason
    assert get_params(s, ["center_threshold", "stuff_area_min"]) == before
    still_publishing(s)


def test_good_change_after_abuse_applies(running):
    s = running
    r = set_param(s, "center_threshold", 0.25)
    assert r.successful, r.reason
    r = set_param(s, "stuff_area_min", 10)
    assert r.successful, r.reason
    assert get_params(s, ["center_threshold", "stuff_area_min"]) == {
        "center_threshold": 0.25,
        "stuff_area_min": 10,
    }
    still_publishing(s)
    assert "Traceback" not in s["node"].output, s["node"].output


def test_label_info_follows_center_threshold(running):
    """LabelInfo.threshold is center_threshold: a change republishes the latched message, so
    current and late subscribers see the threshold in force."""
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from vision_msgs.msg import LabelInfo

    s = running
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    box = s["tester"].collect(LabelInfo, f"/{TAG}/label_info", latched)
    s["tester"].wait_for(lambda: box, timeout=15, what="latched label_info")
    assert set_param(s, "center_threshold", 0.375).successful
    s["tester"].wait_for(
        lambda: box[-1].threshold == 0.375, timeout=15, what="label_info with threshold 0.375"
    )
    assert not set_param(s, "center_threshold", 7.0).successful  # rejected: nothing republished
    late = s["tester"].collect(LabelInfo, f"/{TAG}/label_info", latched)
    s["tester"].wait_for(lambda: late, timeout=15, what="latched label_info for a late subscriber")
    assert [m.threshold for m in late] == [0.375] and box[-1].threshold == 0.375
    assert len(late[0].class_map) == len(box[0].class_map) > 0
