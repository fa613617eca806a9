"""Overload and soak runs of the real node (slow: minutes; run with ``pytest -m slow test/test_soak.py``).

They start ``panoptic_node`` through ``panoptic-ros bench --overload`` / ``--soak`` and check the
summary line. Thresholds follow docs/performance.md: under 2x overload latency stays bounded
(p99 within ``P99_FACTOR`` x the node's light-load latency), RSS grows < 5 % after warm-up, and
lifecycle cycling leaks no threads. On a heavily shared machine the latency bound can be
loosened with PANOPTIC_SOAK_P99_FACTOR. Both runs use ``--large-shm 16`` (a Fast DDS profile with a
16 MiB shared-memory segment): with the default 512 KiB segment most VGA frames are lost in DDS
before the node sees them (docs/performance.md), which would measure the transport, not the node.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]

REPO = Path(__file__).resolve().parents[1]
P99_FACTOR = float(os.environ.get("PANOPTIC_SOAK_P99_FACTOR", "2.0"))
RSS_GROWTH_PCT = 5.0


def kv(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def run_bench(*args, timeout: float) -> dict[str, str]:
    pytest.importorskip("rclpy")
    pytest.importorskip("psutil")
    try:
        import vision_msgs  # noqa: F401
    except ImportError:
        pytest.skip("the node needs vision_msgs (build interfaces/ first)")
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run(
        [sys.executable, "-m", "panoptic_ros.cli", "bench", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    sys.stderr.write(p.stderr[-6000:])
    return kv(p.stdout.strip().splitlines()[-1])


def test_overload_bounded_latency_flat_rss():
    duration = float(os.environ.get("PANOPTIC_SOAK_OVERLOAD_S", "60"))
    r = run_bench(
        "--overload",
        "--large-shm",
        16,
        "--duration",
        duration,
        "--cameras",
        "1,2",
        "--frames",
        30,
        "--warmup",
        5,
        timeout=6 * duration + 600,
    )
    assert int(r["node_exit"]) == 0 and int(r["node_exit_2cam"]) == 0
    assert float(r["output_hz"]) > 0 and float(r["output_hz_2cam"]) > 0
    assert int(r["drops"]) > 0, "2x overload must drop frames (latest-frame slot), not queue them"
    assert float(r["p99_ratio"]) <= P99_FACTOR, r
    assert float(r["rss_growth_pct"]) < RSS_GROWTH_PCT, r
    assert float(r["rss_growth_pct_2cam"]) < RSS_GROWTH_PCT, r
    assert int(r["threads_end"]) <= int(r["threads_start"]), r


def test_soak_with_lifecycle_cycles():
    duration = float(os.environ.get("PANOPTIC_SOAK_S", "300"))
    r = run_bench(
        "--soak",
        "--large-shm",
        16,
        "--duration",
        duration,
        "--cycles",
        20,
        "--frames",
        30,
        "--warmup",
        5,
        timeout=duration + 900,
    )
    assert int(r["node_exit"]) == 0
    assert int(r["cycles_ok"]) == 20, r
    assert int(r["threads_end"]) <= int(r["threads_start"]), r
    assert float(r["rss_growth_pct"]) < RSS_GROWTH_PCT, r
    assert float(r["output_hz_after"]) > 0, "no output after lifecycle cycling"
