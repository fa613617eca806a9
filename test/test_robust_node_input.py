"""Hostile input frames against the running ``panoptic_node`` over DDS (issue #8).

A seeded generator builds a bounded set of sensor_msgs/Image and CompressedImage messages:
valid-but-odd ones (padded steps, 1x1, odd sizes, big-endian 16-bit, oversized data, every
encoding family) and broken ones (unknown encodings, zero / huge declared sizes with short
data, step smaller than a row, truncated data, odd-width YUV, garbage / truncated JPEG and PNG,
a 600-byte JPEG declaring 16000x16000). They go to one node with two cameras (raw Image and
CompressedImage), each followed by a good frame. The oracle:

* the node process stays alive (and exits 0 on SIGINT, with no traceback in its output);
* every good frame (and every valid odd frame) yields outputs carrying its stamp, at its size;
* every broken frame raises ``frames_bad`` of its camera in /diagnostics (the fault is survived).

The counts (inputs tried, faults survived) are printed for docs/robustness.md.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")

from ros_helpers import (  # noqa: E402
    DDS_MARKS,
    NodeProcess,
    RosTester,
    ctx,  # noqa: E402,F401  (module-scoped fixture)
    stamp_ns,
)
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

pytestmark = DDS_MARKS

TAG = f"ri{os.getpid()}"
SEED = 8
N_HOSTILE = 60
MAX_IMAGE_PIXELS = 4_000_000  # node parameter for this test: ~2k x 2k


@dataclass
class Case:
    name: str
    camera: str  # "raw" | "comp"
    msg: Any
    expect: str  # "ok" (outputs at size) | "bad" (frames_bad rises) | "either"
    size: tuple[int, int] | None = None  # (h, w) of the outputs when ok


# ------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------
def _img(enc: str, h: int, w: int, step: int, data: bytes, big: int = 0) -> Image:
    return Image(height=h, width=w, encoding=enc, step=step, is_bigendian=big, data=data)


def _comp(fmt: str, data: bytes) -> CompressedImage:
    return CompressedImage(format=fmt, data=data)


def _jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()


def _png(a: np.ndarray) -> bytes:
    return cv2.imencode(".png", a)[1].tobytes()


def _jpeg_declaring(h: int, w: int) -> bytes:
    b = bytearray(_jpeg(np.zeros((16, 16, 3), np.uint8)))
    i = b.find(b"\xff\xc0")
    b[i + 5 : i + 7] = h.to_bytes(2, "big")
    b[i + 7 : i + 9] = w.to_bytes(2, "big")
    return bytes(b)


def generate(seed: int = SEED, n: int = N_HOSTILE) -> list[Case]:
    """A deterministic mix: every category at least once, then random picks up to ``n``."""
    r = random.Random(seed)
    g = np.random.default_rng(seed)

    def u8(*shape):
        return g.integers(0, 256, shape, dtype=np.uint8)

    def dims(lo=1, hi=97):
        return r.randint(lo, hi), r.randint(lo, hi)

    def ok_rgb8():
        h, w = dims()
        return Case("rgb8", "raw", _img("rgb8", h, w, 3 * w, u8(h, w, 3).tobytes()), "ok", (h, w))

    def ok_padded():
        h, w = dims()
        pad = r.choice([1, 3, 13, 64])
        enc, c = r.choice([("rgb8", 3), ("bgr8", 3), ("mono8", 1), ("rgba8", 4)])
        return Case(
            f"{enc}_padded{pad}",
            "raw",
            _img(enc, h, w, c * w + pad, u8(h, c * w + pad).tobytes()),
            "ok",
            (h, w),
        )

    def ok_tiny():
        h, w = r.choice([(1, 1), (1, 7), (9, 1), (2, 3)])
        return Case(
            f"rgb8_{h}x{w}", "raw", _img("rgb8", h, w, 3 * w, u8(h, w, 3).tobytes()), "ok", (h, w)
        )

    def ok_16bit():
        h, w = dims()
        enc = r.choice(["mono16", "16UC1"])
        big = r.choice([0, 1])
        a = g.integers(0, 65536, (h, w), dtype=np.uint16).astype(">u2" if big else "<u2")
        return Case(
            f"{enc}_{'be' if big else 'le'}",
            "raw",
            _img(enc, h, w, 2 * w, a.tobytes(), big),
            "ok",
            (h, w),
        )

    def ok_rgb16_be():
        h, w = dims()
        a = g.integers(0, 65536, (h, w, 3), dtype=np.uint16).astype(">u2")
        return Case("rgb16_be", "raw", _img("rgb16", h, w, 6 * w, a.tobytes(), 1), "ok", (h, w))

    def ok_yuv():
        h, w = dims()
        w += w % 2
        enc = r.choice(["yuv422", "uyvy", "yuyv", "yuv422_yuy2"])
        return Case(enc, "raw", _img(enc, h, w, 2 * w, u8(h, 2 * w).tobytes()), "ok", (h, w))

    def ok_bayer():
        h, w = dims(2, 97)
        enc = r.choice(["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"])
        return Case(enc, "raw", _img(enc, h, w, w, u8(h, w).tobytes()), "either", (h, w))

    def ok_oversized():
        h, w = dims()
        extra = r.choice([1, 1000, 200_000])
        return Case(
            f"rgb8_extra{extra}",
            "raw",
            _img("rgb8", h, w, 3 * w, u8(h * w * 3 + extra).tobytes()),
            "ok",
            (h, w),
        )

    def ok_big_flag_8bit():
        h, w = dims()
        return Case(
            "bgr8_bigendian_flag",
            "raw",
            _img("bgr8", h, w, 3 * w, u8(h, w, 3).tobytes(), 1),
            "ok",
            (h, w),
        )

    def bad_encoding():
        h, w = dims()
        enc = r.choice(["", "rgb9", "jpeg", "RGB 8", "32FC1", "nv12", "\u00e9ncoding", "x" * 300])
        return Case(
            f"enc_{enc[:12]!r}", "raw", _img(enc, h, w, 3 * w, u8(h, w, 3).tobytes()), "bad"
        )

    def bad_zero():
        h, w = r.choice([(0, 0), (0, 16), (16, 0)])
        return Case(f"zero_{h}x{w}", "raw", _img("rgb8", h, w, 3 * w, u8(48).tobytes()), "bad")

    def bad_huge_declared():
        h, w = r.choice(
            [(2**31, 2**31), (2**32 - 1, 1), (100_000, 100_000), (16385, 4), (3000, 3000)]
        )
        return Case(
            f"huge_{h}x{w}", "raw", _img("rgb8", h, w, (3 * w) % 2**32, u8(300).tobytes()), "bad"
        )

    def bad_step_small():
        h, w = dims(2, 97)
        step = r.choice([0, 1, 3 * w - 1])
        return Case(
            f"step{step}_lt_row", "raw", _img("rgb8", h, w, step, u8(h, 3 * w).tobytes()), "bad"
        )

    def bad_step_huge():
        h, w = dims()
        return Case("step_huge", "raw", _img("rgb8", h, w, 2**32 - 1, u8(h, w, 3).tobytes()), "bad")

    def bad_truncated():
        h, w = dims(2, 97)
        n = r.choice([0, 1, h * w * 3 - 1, (h - 1) * w * 3])
        return Case(
            f"truncated_{n}of{h * w * 3}", "raw", _img("rgb8", h, w, 3 * w, u8(n).tobytes()), "bad"
        )

    def bad_16bit_odd_bytes():
        h, w = dims(2, 60)
        return Case(
            "mono16_be_short",
            "raw",
            _img("mono16", h, w, 2 * w, u8(2 * h * w - 1).tobytes(), 1),
            "bad",
        )

    def bad_yuv_odd():
        h, w = dims()
        w |= 1
        return Case(
            "yuv422_odd_width", "raw", _img("yuv422", h, w, 2 * w, u8(h, 2 * w).tobytes()), "bad"
        )

    def bad_over_limit():  # within encodings' own limits, over the node's max_image_pixels
        h, w = 4000, 1001
        return Case("over_max_image_pixels", "raw", _img("mono8", h, w, w, u8(64).tobytes()), "bad")

    def ok_jpeg():
        h, w = dims()
        fmt = r.choice(
            ["jpeg", "jpg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed rgb8", ""]
        )
        return Case(f"jpeg_{fmt[:8]!r}", "comp", _comp(fmt, _jpeg(u8(h, w, 3))), "ok", (h, w))

    def ok_png():
        h, w = dims()
        a = r.choice(
            [u8(h, w, 3), u8(h, w), u8(h, w, 4), g.integers(0, 65536, (h, w), dtype=np.uint16)]
        )
        fmt = r.choice(["png", "bgr8; png compressed bgr8", ""])
        return Case(f"png_{a.dtype}_{a.ndim}", "comp", _comp(fmt, _png(a)), "ok", (h, w))

    def bad_garbage_comp():
        data = r.choice(
            [
                b"",
                g.bytes(r.randint(1, 5000)),
                b"\xff\xd8\xff",
                b"\x89PNG\r\n\x1a\n",
                b"\xff\xd8\xff\xe0" + g.bytes(100),
                b"\x89PNG\r\n\x1a\n" + g.bytes(30),
            ]
        )
        return Case(
            f"garbage_{len(data)}B", "comp", _comp(r.choice(["jpeg", "png", ""]), data), "bad"
        )

    def bad_format():
        fmt = r.choice(
            ["bmp", "tiff", "png; compressedDepth", "h264", "jpeg xl" if False else "webp"]
        )
        return Case(f"format_{fmt}", "comp", _comp(fmt, _jpeg(u8(8, 8, 3))), "bad")

    def bad_bomb():
        h, w = r.choice([(16000, 16000), (65535, 65535), (4000, 4000), (0, 100)])
        return Case(f"jpeg_declares_{h}x{w}", "comp", _comp("jpeg", _jpeg_declaring(h, w)), "bad")

    def either_truncated_comp():
        h, w = dims(8, 97)
        data = r.choice([_jpeg, lambda a: _png(a[..., ::-1])])(u8(h, w, 3))
        cut = data[: r.randint(len(data) // 3, len(data) - 1)]
        return Case(
            f"truncated_comp_{len(cut)}of{len(data)}", "comp", _comp("", cut), "either", (h, w)
        )

    makers: list[Callable[[], Case]] = [
        ok_rgb8,
        ok_padded,
        ok_tiny,
        ok_16bit,
        ok_rgb16_be,
        ok_yuv,
        ok_bayer,
        ok_oversized,
        ok_big_flag_8bit,
        bad_encoding,
        bad_zero,
        bad_huge_declared,
        bad_step_small,
        bad_step_huge,
        bad_truncated,
        bad_16bit_odd_bytes,
        bad_yuv_odd,
        bad_over_limit,
        ok_jpeg,
        ok_png,
        bad_garbage_comp,
        bad_format,
        bad_bomb,
        either_truncated_comp,
    ]
    cases = [m() for m in makers]
    bad_heavy = [m for m in makers if m.__name__.startswith("bad")]
    while len(cases) < n:  # bias the random fill towards faults
        cases.append(r.choice(makers + bad_heavy)())
    r.shuffle(cases)
    return cases[:n]


def test_generator_is_deterministic_and_mixed():
    a, b = generate(), generate()
    assert [c.name for c in a] == [c.name for c in b]
    kinds = {c.expect for c in a}
    assert kinds >= {"ok", "bad"} and {c.camera for c in a} == {"raw", "comp"}
    assert len(a) == N_HOSTILE


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------
def _diag_counts(diag_box: list, prefix: str) -> dict[str, dict[str, str]]:
    """camera -> latest KeyValues of this node's statuses."""
    out: dict[str, dict[str, str]] = {}
    for arr in list(diag_box):
        for st in arr.status:
            if st.name.startswith(prefix):
                out[st.name.split(": ", 1)[1]] = {kv.key: kv.value for kv in st.values}
    return out


def test_hostile_frames_survived(ctx):
    from diagnostic_msgs.msg import DiagnosticArray

    ns = f"/{TAG}"
    node = NodeProcess(
        ns,
        "-p",
        "threads:=1",
        "-p",
        "cameras:=[raw, comp]",
        "-p",
        "max_batch:=1",
        "-p",
        "input_qos:=reliable",
        "-p",
        "diagnostics_period:=0.1",
        "-p",
        "bad_frame_log_period:=60.0",
        "-p",
        f"max_image_pixels:={MAX_IMAGE_PIXELS}",
        "-r",
        f"raw/image:={ns}/in/raw",
        "-r",
        f"comp/image:={ns}/in/comp/compressed",
    )
    tester = RosTester(ctx, f"{TAG}_tester")
    sem = {c: tester.collect(Image, f"{ns}/{c}/semantic") for c in ("raw", "comp")}
    pan = {c: tester.collect(Image, f"{ns}/{c}/panoptic") for c in ("raw", "comp")}
    diag = tester.collect(DiagnosticArray, "/diagnostics")
    pubs = {
        "raw": tester.node.create_publisher(Image, f"{ns}/in/raw", 10),
        "comp": tester.node.create_publisher(CompressedImage, f"{ns}/in/comp/compressed", 10),
    }
    prefix = f"{ns}/panoptic_node: "
    good_rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
    good = {
        "raw": lambda: _img("rgb8", 48, 64, 192, good_rgb.tobytes()),
        "comp": lambda: _comp("jpeg", _jpeg(good_rgb)),
    }
    stamp = [10**9]

    def send(cam: str, msg) -> int:
        stamp[0] += 1_000_003
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp[0], 10**9)
        msg.header.frame_id = f"{cam}_frame"
        pubs[cam].publish(msg)
        return stamp[0]

    def output_for(cam: str, s: int):
        for m in list(sem[cam]):
            if stamp_ns(m) == s:
                return m
        return None

    def bad_count(cam: str) -> int:
        return int(_diag_counts(diag, prefix).get(cam, {}).get("frames_bad", "0"))

    def wait(pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            assert node.alive(), f"node died:\n{node.output[-4000:]}"
            time.sleep(0.01)
        return False

    problems: list[str] = []
    tried = survived = ok_outputs = good_outputs = 0
    try:
        # ready: a good frame on each camera comes back
        for cam in ("raw", "comp"):
            deadline = time.monotonic() + 90
            while True:
                s = send(cam, good[cam]())
                if wait(lambda: output_for(cam, s) is not None, 2.0):
                    break
                assert time.monotonic() < deadline, f"node not ready:\n{node.output[-4000:]}"
        assert wait(lambda: set(_diag_counts(diag, prefix)) >= {"raw", "comp"}, 10), (
            "no diagnostics"
        )
        for case in generate():
            tried += 1
            before = bad_count(case.camera)
            s = send(case.camera, case.msg)
            got_out = lambda: output_for(case.camera, s) is not None  # noqa: E731
            got_bad = lambda: bad_count(case.camera) > before  # noqa: E731
            if case.expect == "ok":
                if not wait(got_out, 20):
                    problems.append(f"{case.name}: valid frame gave no output (bad={got_bad()})")
                else:
                    ok_outputs += 1
                    m = output_for(case.camera, s)
                    if (m.height, m.width) != case.size:
                        problems.append(
                            f"{case.name}: output {m.height}x{m.width} != input {case.size}"
                        )
            elif case.expect == "bad":
                if wait(got_bad, 10):
                    survived += 1
                else:
                    problems.append(f"{case.name}: frames_bad did not rise (output={got_out()})")
            else:
                if wait(lambda: got_out() or got_bad(), 20):
                    survived += int(got_bad())
                    ok_outputs += int(got_out())
                else:
                    problems.append(f"{case.name}: neither output nor bad-frame count")
            # the good frame after it must come through with its stamp
            g_s = send(case.camera, good[case.camera]())
            pan_for = lambda: [m for m in list(pan[case.camera]) if stamp_ns(m) == g_s]  # noqa: E731
            if wait(lambda: output_for(case.camera, g_s) is not None and pan_for(), 20):
                good_outputs += 1
                m = pan_for()[0]
                if m.header.frame_id != f"{case.camera}_frame" or (m.height, m.width) != (48, 64):
                    problems.append(
                        f"after {case.name}: panoptic for the good frame has header "
                        f"{m.header.frame_id!r}, size {m.height}x{m.width}"
                    )
            else:
                problems.append(f"after {case.name}: good frame {g_s} gave no output")
        assert node.alive(), node.output[-4000:]
        final = _diag_counts(diag, prefix)
        peak_mb = _peak_rss_mb(node.proc.pid)
    finally:
        tester.close()
        rc = node.stop()
    print(
        f"\nnode input robustness: inputs_tried={tried} faults_survived={survived} "
        f"odd_valid_outputs={ok_outputs} good_frames_ok={good_outputs}/{tried} "
        f"frames_bad={{raw: {final.get('raw', {}).get('frames_bad')}, comp: {final.get('comp', {}).get('frames_bad')}}} "  # noqa: E501
        f"node_peak_rss_mb={peak_mb:.0f} node_rc={rc}"
    )
    assert rc == 0, f"exit code {rc}:\n{node.output[-4000:]}"
    assert "Traceback" not in node.output, node.output[-4000:]
    assert not problems, "\n".join(problems)
    assert survived >= 25 and good_outputs == tried
    # declared-size bombs (16000x16000 JPEG, 2^31 x 2^31 raw) are refused before any allocation
    assert peak_mb < PEAK_RSS_LIMIT_MB, (
        f"node peak RSS {peak_mb:.0f} MB: a hostile frame was decoded / allocated"
    )


#: the node (onnxruntime, default model) peaks near 400 MB here; one decoded 16000x16000 bomb adds 768 MB
PEAK_RSS_LIMIT_MB = 900


def _peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of ``pid`` in MiB, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
