"""Fast smoke tests: statistics helpers, the bench command's output format, gpu_check --cpu-only.

No timing assertions: the machine running the tests may be shared and slow. Only formats,
shapes, and the arithmetic of the statistics are checked.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.bench.loadgen import diag_drop_total, make_image_msg
from panoptic_ros.bench.timing import (
    StageTimer,
    format_kv,
    format_table,
    growth_pct,
    overhead_ratio,
    parse_size,
    parse_sizes,
    percentile,
    summarize,
    time_call,
    windowed,
)

REPO = Path(__file__).resolve().parents[1]
FLOAT = r"-?\d+\.\d+"
SINGLE_LINE = re.compile(rf"^e2e_ms=({FLOAT}) infer_ms=({FLOAT}) overhead_ratio=({FLOAT})$")


# ---------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------
def test_summarize_known_values():
    s = summarize(range(1, 101))  # 1..100
    assert s.n == 100
    assert s.mean == pytest.approx(50.5)
    assert s.min == 1 and s.max == 100
    assert s.p50 == pytest.approx(50.5)
    assert s.p99 == pytest.approx(99.01)  # linear interpolation between 99 and 100
    assert s.rate_hz == pytest.approx(1000 / 50.5)


def test_summarize_ignores_nan_and_handles_empty():
    s = summarize([1.0, float("nan"), 3.0, float("inf")])
    assert s.n == 2 and s.mean == 2.0
    e = summarize([])
    assert e.n == 0 and math.isnan(e.mean) and math.isnan(e.p99)
    assert math.isnan(percentile([], 50))


def test_percentile_bounds():
    assert percentile([5.0], 99) == 5.0
    assert percentile([0, 10], 50) == 5.0
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_overhead_ratio():
    assert overhead_ratio(100.0, 80.0) == pytest.approx(0.2)
    assert overhead_ratio(50.0, 50.0) == 0.0
    assert overhead_ratio(10.0, 10.5) == 0.0  # timer noise clamps at 0
    assert math.isnan(overhead_ratio(0.0, 1.0))
    assert math.isnan(overhead_ratio(10.0, float("nan")))


def test_growth_pct():
    assert growth_pct(200.0, 210.0) == pytest.approx(5.0)
    assert growth_pct(200.0, 190.0) == pytest.approx(-5.0)
    assert math.isnan(growth_pct(0.0, 1.0))


def test_stage_timer_order_and_warmup():
    ticks = iter(np.arange(0.0, 100.0, 0.001))
    t = StageTimer(warmup=2, clock=lambda: next(ticks))
    for i in range(5):
        with t.stage("b"):
            pass
        t.add("a", float(i))
    assert t.names == ["b", "a"]  # first-appearance order
    assert t.samples("a") == [2.0, 3.0, 4.0]
    st = t.stats()
    assert list(st) == ["b", "a"]
    assert st["b"].n == 3 and st["b"].mean == pytest.approx(1.0)  # one fake tick = 1 ms
    assert time_call(lambda: None, frames=4, warmup=1).n == 4


def test_windowed_includes_empty_windows():
    times = [0.0, 1.0, 2.0, 25.0, 29.0]
    vals = [1.0, 2.0, 3.0, 10.0, 20.0]
    w = windowed(times, vals, 10.0, start_s=0.0, end_s=30.0)
    assert [t for t, _ in w] == [0.0, 10.0, 20.0]
    assert [s.n for _, s in w] == [3, 0, 2]
    assert w[0][1].mean == pytest.approx(2.0)
    assert math.isnan(w[1][1].mean)
    assert sum(s.n for _, s in windowed(times, vals, 7.0)) == len(
        times
    )  # every sample in one window
    with pytest.raises(ValueError):
        windowed([0.0], [1.0, 2.0], 1.0)


def test_format_table_and_kv():
    txt = format_table(["stage", "mean ms"], [("infer", 12.3456), ("publish", float("nan"))], 2)
    lines = txt.splitlines()
    assert lines[0].split() == ["stage", "mean", "ms"]
    assert "12.35" in lines[2] and lines[3].split() == ["publish", "-"]
    assert format_kv(a=1.5, b=3, c="x", d=float("nan"), e=True) == "a=1.500 b=3 c=x d=nan e=true"


def test_parse_sizes():
    assert parse_size("480x640") == (480, 640)
    assert parse_sizes("240x320, 1024x2048") == [(240, 320), (1024, 2048)]
    for bad in ("480", "ax640", "8x8"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_diag_drop_total():
    vals = {
        "panoptic: cam0": {"dropped frames": "12", "rate": "9.5"},
        "panoptic: cam1": {"drops_total": "3 frames", "latency": "x"},
        "other": {"dropped": "n/a"},
    }
    assert diag_drop_total(vals) == 15.0


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_make_image_msg_round_trip(encoding):
    import cv2

    from panoptic_ros.ros.conversions import image_msg_to_array

    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    msg = make_image_msg(rgb, encoding, frame_id="cam3")
    assert (msg.encoding, msg.header.frame_id, msg.height, msg.width) == (encoding, "cam3", 6, 8)
    back = image_msg_to_array(msg)
    if encoding == "mono8":
        rgb = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    np.testing.assert_array_equal(back, rgb)


# ---------------------------------------------------------------------------------------
# the command (random-weight model so the tests never depend on training having run)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from panoptic_ros.core.taxonomy import Taxonomy
    from panoptic_ros.families.model_store import save_model
    from panoptic_ros.families.panoptic_net import (
        ARCH_DEFAULTS,
        DEFAULT_MEAN,
        DEFAULT_STD,
        build_net,
    )

    d = tmp_path_factory.mktemp("bench_model")
    tax = Taxonomy.default()
    torch.manual_seed(0)
    arch = dict(ARCH_DEFAULTS)
    save_model(
        d / "model",
        build_net(tax.num_classes, arch),
        tax,
        input_size=(64, 96),
        top_k=8,
        arch=arch,
        mean=DEFAULT_MEAN,
        std=DEFAULT_STD,
    )
    return d / "model", d / "cache"


def _env(cache: Path) -> dict:
    env = dict(os.environ)
    env["PANOPTIC_ROS_CACHE"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_bench(cache: Path, *args, timeout=300) -> subprocess.CompletedProcess:
    """``panoptic-ros bench ARGS`` in a subprocess with its own model cache."""
    return subprocess.run(
        [sys.executable, "-m", "panoptic_ros.cli", "bench", *map(str, args)],
        cwd=REPO,
        env=_env(cache),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bench(tiny_model, *args, timeout=300) -> subprocess.CompletedProcess:
    model, cache = tiny_model
    return run_bench(cache, "--model", model, *args, timeout=timeout)


@contextlib.contextmanager
def no_dds_profile_in_env() -> Iterator[None]:
    """Let the bench choose its Fast DDS profile itself: the profile variables a caller (CI, a
    developer's shell) exported are taken out of the environment while the block runs."""
    from panoptic_ros.ros import dds_profile

    keys = (dds_profile.FASTDDS_VAR, dds_profile.FASTRTPS_VAR)
    saved = {k: os.environ.pop(k) for k in keys if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def test_bench_single_output_format(tiny_model):
    p = bench(
        tiny_model,
        "--height",
        48,
        "--width",
        64,
        "--frames",
        3,
        "--warmup",
        1,
        "--publish",
        "serialize",
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    m = SINGLE_LINE.match(last)
    assert m, f"last stdout line {last!r}"
    e2e, infer, ratio = (float(v) for v in m.groups())
    assert e2e > 0 and infer > 0 and 0.0 <= ratio <= 1.0
    assert ratio == pytest.approx(max(0.0, (e2e - infer) / e2e), abs=2e-3)
    for stage in (
        "decode",
        "preprocess",
        "infer",
        "postprocess",
        "track",
        "messages",
        "publish",
        "e2e",
    ):
        assert re.search(rf"^{stage}\s", p.stderr, re.M), (
            f"stage {stage} missing from table:\n{p.stderr}"
        )


def test_bench_sizes_and_json(tiny_model, tmp_path):
    out = tmp_path / "bench.json"
    p = bench(
        tiny_model,
        "--sizes",
        "32x48,48x64",
        "--frames",
        2,
        "--warmup",
        0,
        "--publish",
        "none",
        "--json",
        out,
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("e2e_ms=") and "e2e_ms_32x48=" in last and "e2e_ms_48x64=" in last
    assert "pre_speedup_32x48=" in last and "up_speedup_48x64=" in last  # old vs new, same run
    import json

    data = json.loads(out.read_text())
    assert set(data["sizes"]) == {"32x48", "48x64"}
    ab = data["sizes"]["48x64"]["preprocess_ab"]
    assert ab["pre_ms"] > 0 and ab["pre_single_ms"] > 0 and ab["up_speedup"] > 0
    assert data["machine"]["nproc"] >= 1


def test_bench_compare_lists_backends(tiny_model):
    p = bench(
        tiny_model,
        "--compare",
        "--backends",
        "onnxruntime,torch",
        "--height",
        32,
        "--width",
        48,
        "--frames",
        2,
        "--warmup",
        0,
        "--publish",
        "none",
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("e2e_ms=") and "fastest=" in last
    assert "onnxruntime-cpu" in p.stderr and "torch-cpu" in p.stderr


def test_bench_rejects_bad_sizes(tiny_model):
    p = bench(tiny_model, "--sizes", "480", "--frames", 1)
    assert p.returncode == 2
    assert "HEIGHTxWIDTH" in p.stderr


@pytest.mark.ros
def test_bench_publishes_over_dds(tiny_model):
    pytest.importorskip("rclpy")
    p = bench(
        tiny_model, "--height", 32, "--width", 48, "--frames", 3, "--warmup", 1, "--publish", "dds"
    )
    assert p.returncode == 0, p.stderr
    assert "publish=dds" in p.stderr
    assert SINGLE_LINE.match(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# gpu_check: runs on a CPU-only machine, without OpenCV / PyYAML / safetensors / ROS
# ---------------------------------------------------------------------------------------
def test_gpu_check_cpu_only_without_optional_packages(tiny_model):
    model, cache = tiny_model
    env = _env(cache)
    env["PANOPTIC_GPU_CHECK_HIDE"] = "cv2,yaml,safetensors,rclpy"
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_check"),
            "--cpu-only",
            "--model",
            str(model),
            "--sizes",
            "32x48",
            "--cpu-frames",
            "2",
            "--warmup",
            "1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert "status=partial" in last and "cuda=false" in last and "failures=none" in last, last
    assert "min_panoptic_match_pct=" in last
    assert "stand-ins" in p.stderr and "NO CUDA" in p.stderr
    assert re.search(r"^ort-cpu-fp32\s+32x48", p.stderr, re.M)


def test_bench_families_table_has_every_case(tmp_path):
    """``bench --families`` needs no model: every family / case is in the table with finite
    numbers and the summary line names each family's worst case (no timing asserts)."""
    from panoptic_ros.bench.families import cases

    p = run_bench(
        tmp_path / "cache",
        "--families",
        "--frames",
        2,
        "--warmup",
        0,
        "--json",
        tmp_path / "f.json",
    )
    assert p.returncode == 0, p.stderr
    rows = {}
    for line in p.stderr.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 7 and cells[0] in (
            "ours",
            "panoptic_deeplab",
            "mask_classification",
            "yolo_seg",
        ):
            rows[(cells[0], cells[1])] = cells[2:]
    expected = [(c.family, c.case) for c in cases()]
    assert sorted(rows) == sorted(expected), p.stderr
    assert {f for f, _ in expected} == {
        "ours",
        "panoptic_deeplab",
        "mask_classification",
        "yolo_seg",
    }
    for key, (inst, med, p90, cpu, goal) in rows.items():
        assert int(inst) >= 0, key
        assert all(math.isfinite(float(v)) and float(v) > 0 for v in (med, p90, cpu)), key
        assert goal in ("yes", "no"), key
    # kept queries / objects drive the load: the cases are not all empty
    assert int(rows[("yolo_seg", "8400 anchors 80 cls, 100 objects")][0]) > 50
    assert int(rows[("mask_classification", "mask2former Q=100 C=133 kept=0")][0]) == 0
    last = p.stdout.strip().splitlines()[-1]
    kv = dict(part.split("=", 1) for part in last.split())
    for fam in ("ours", "panoptic_deeplab", "mask_classification", "yolo_seg"):
        assert math.isfinite(float(kv[f"{fam}_ms"])), last
        assert math.isfinite(float(kv[f"{fam}_cpu_ms"])), last
    assert int(kv["cases"]) == len(expected) and 0 <= int(kv["over_goal"]) <= len(expected)


@pytest.mark.ros
def test_bench_times_both_publish_forms(tiny_model, tmp_path):
    """--publish-form both: the Image-message path is timed on the same frames (its own stages,
    outside e2e) and the last line carries publish_ratio = message path / serialized path; the
    --json report has every number of that line."""
    pytest.importorskip("rclpy")
    out = tmp_path / "bench.json"
    p = bench(
        tiny_model,
        "--json",
        out,
        "--height",
        32,
        "--width",
        48,
        "--frames",
        4,
        "--warmup",
        1,
        "--publish",
        "dds",
        "--publish-form",
        "both",
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert SINGLE_LINE.match(last.split(" publish_ratio=", 1)[0]), last
    assert re.search(r" overhead_ratio_message=[0-9.]+$", last), last
    assert float(re.search(r"publish_ratio=([0-9.]+)", last).group(1)) > 0
    for stage in ("messages_msg", "publish_msg"):
        assert re.search(rf"^{stage}\s", p.stderr, re.M), p.stderr
    import json

    single = json.loads(out.read_text())["single"]
    for kv in last.split():
        key, value = kv.split("=")
        assert single[key] == pytest.approx(float(value), abs=2e-3), key


def test_bench_tracking_reports_every_variant(tmp_path):
    """``bench --tracking`` needs no model: one row per tracker variant with finite numbers and
    the summary line (no timing asserts: speed is what the bench reports, not a test)."""
    p = run_bench(
        tmp_path / "cache",
        "--tracking",
        "--frames",
        3,
        "--warmup",
        1,
        "--json",
        tmp_path / "t.json",
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"track_ms=(\S+) track_p90_ms=(\S+) track_cpu_ms=(\S+) objects=30", last)
    assert m and all(math.isfinite(float(v)) for v in m.groups()), last
    rows = json.loads((tmp_path / "t.json").read_text())["tracking"]
    assert rows[0]["case"].startswith("default (") and len(rows) >= 2
    assert all(r["objects"] == 30 and r["mean_live_tracks"] > 0 for r in rows)


@pytest.mark.ros
def test_bench_publisher_thread_times_latency_under_the_node_profile(tiny_model):
    """--publisher thread: messages + publish on a second thread; the table gains ``latency``
    (decode start -> publish end), the last line keeps its format, CPU per frame is logged, and
    by default the bench publishes under the shipped Fast DDS profile, as the node's launch does.
    The subscriber takes the outputs serialized (--sink raw)."""
    pytest.importorskip("rclpy")
    from panoptic_ros.ros import dds_profile

    with no_dds_profile_in_env():
        p = bench(
            tiny_model,
            "--height",
            32,
            "--width",
            48,
            "--frames",
            5,
            "--warmup",
            1,
            "--publish",
            "dds",
            "--publisher",
            "thread",
            "--sink",
            "raw",
        )
    assert p.returncode == 0, p.stderr
    assert SINGLE_LINE.match(p.stdout.strip().splitlines()[-1]), p.stdout
    assert f"Fast DDS profile: {dds_profile.shipped_profile()}" in p.stderr, p.stderr
    for stage in ("infer", "messages", "publish", "e2e", "latency"):
        assert re.search(rf"^{stage}\s", p.stderr, re.M), p.stderr
    assert re.search(r"^CPU per frame: bench process [0-9.]+ ms", p.stderr, re.M), p.stderr
    assert re.search(r"^latency \(decode start -> publish end\): mean [0-9.]+ ms", p.stderr, re.M)


def test_bench_dds_profile_none_and_missing(tiny_model, tmp_path):
    """--dds-profile none leaves Fast DDS defaults; a missing profile file is a clear error (2)."""
    with no_dds_profile_in_env():
        args = ("--height", 32, "--width", 48, "--frames", 2, "--warmup", 0, "--publish", "none")
        p = bench(tiny_model, *args, "--dds-profile", "none")
        assert p.returncode == 0, p.stderr
        assert "Fast DDS profile: none (Fast DDS defaults)" in p.stderr
        missing = tmp_path / "nope.xml"
        p = bench(tiny_model, *args, "--dds-profile", missing)
        assert p.returncode == 2
        assert str(missing) in p.stderr and "does not exist" in p.stderr


def test_bench_publisher_thread_rejects_both_forms(tiny_model):
    p = bench(
        tiny_model,
        *("--height", 32, "--width", 48, "--frames", 2, "--warmup", 0),
        *("--publish", "none", "--publisher", "thread", "--publish-form", "both"),
    )
    assert p.returncode == 2, p.stderr  # a usage error, named before the model loads
    assert "--publisher thread times one publish form" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (("--precisions", "fp32,fp32"), "distinct"),
        (("--precisions", "fp32,int9"), "unknown int9"),
        (("--precisions", "fp32,int8", "--compare"), "--precisions and --compare"),
        (("--tracking", "--precisions", "fp32,int8"), "--precisions and --tracking"),
        (("--compare", "--sizes", "32x48"), "--compare and --sizes"),
        (("--sink", "raw", "--publish", "none"), "--publish none starts none"),
        (("--precision", "int9"), "invalid choice"),
    ],
)
def test_bench_rejects_flag_combinations_it_cannot_honour(tiny_model, flags, fragment):
    """Each was ignored (a mode silently dropped) or failed after loading the model (exit 1)."""
    p = bench(tiny_model, "--frames", 1, "--warmup", 0, *flags)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr and "Traceback" not in p.stderr, p.stderr
