"""demo smoke test: the real command, few frames, real model on ONNX Runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built")

from panoptic_ros.bags.reader import BagReader  # noqa: E402


def test_demo_smoke(tmp_path):
    out = tmp_path / "demo"
    exe = Path(sys.executable).with_name("panoptic-ros")
    cmd = [
        str(exe),
        "demo",
        "--out",
        str(out),
        "--frames",
        "3",
        "--size",
        "120x160",
        "--overlays",
        "2",
        "--backend",
        "onnxruntime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    kv = dict(item.split("=", 1) for item in proc.stdout.strip().splitlines()[-1].split())
    assert {"frames", "pq", "sq", "rq", "mean_ms", "p99_ms", "out"} <= set(kv)
    assert kv["frames"] == "3" and kv["out"] == str(out)
    for k in ("pq", "sq", "rq"):
        assert 0.0 <= float(kv[k]) <= 1.0
    assert float(kv["mean_ms"]) > 0
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 200 and sheet.shape[1] > 600  # 2 rows x 3 columns
    overlays = sorted((out / "overlays").glob("frame_*.png"))
    assert len(overlays) == 2 and cv2.imread(str(overlays[0])).shape == (120, 160, 3)
    assert proc.stdout.strip().splitlines()[-1] in (out / "summary.txt").read_text()
    with BagReader(out / "panoptic_bag") as r:
        for name in ("image_raw", "semantic", "instance", "panoptic", "detections", "overlay"):
            assert r.topics[f"/camera/{name}"].count == 3, name
    # re-running into the same directory replaces the previous results
    proc = subprocess.run(cmd[:-2] + ["--frames", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with BagReader(out / "camera_bag") as r:
        assert r.topics["/camera/image_raw"].count == 2
