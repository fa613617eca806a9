"""The staged downscale (core/preprocess.py ``resize_image``) against one cv2 INTER_AREA call.

Where the staged path is not taken (integer factors, odd sides, upscaling, tiny frames) the
result must be bit-identical to today's single call. Where it is taken, it is a different
kernel by design: each halving must be the exact rounded 2x2 box mean, the last step cv2's
INTER_AREA of the halved frame, and the whole within the tolerance docs/performance.md states
(smooth content: max 2 grey levels, mean < 0.5; synthetic scenes: mean < 2). Its PQ effect is
measured, not tested (docs/performance.md gives the command). No timing here: speed lives in
``panoptic-ros bench --sizes``.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from panoptic_ros.core import encodings, synthetic
from panoptic_ros.core.preprocess import Preprocessor, resize_image, resize_steps

NET = (240, 320)


def _direct(im: np.ndarray, hw=NET) -> np.ndarray:
    """Today's reference: one cv2.resize, INTER_AREA when shrinking both axes, else LINEAR."""
    shrink = im.shape[0] >= hw[0] and im.shape[1] >= hw[1]
    flag = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(im, (hw[1], hw[0]), interpolation=flag)


def _smooth(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """Low-frequency float field in 27..228 (c channels): content with no edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((h, w, c), np.float32)
    for k in range(c):
        a, b, p, q = rng.uniform(0.002, 0.02, 4)
        out[..., k] = 127.5 + 100 * np.sin(a * x + b * y + p * 10) * np.cos(q * y)
    return out


def _noise(hw, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def test_resize_steps_plan():
    assert resize_steps((1024, 2048), NET) == [(512, 1024), (256, 512), NET]
    assert resize_steps((1080, 1920), NET) == [(540, 960), (270, 480), NET]
    assert resize_steps((2000, 2000), NET) == [(1000, 1000), (500, 500), NET]
    # integer factors, odd sides, upscaling, mixed: the one cv2 call of before
    for hw in [(480, 640), (720, 1280), (960, 1280), (2160, 3840), (1023, 2047), (481, 2048)]:
        assert resize_steps(hw, NET) == [NET], hw
    for hw in [(100, 100), (1, 1), (120, 2048), (2048, 120)]:
        assert resize_steps(hw, NET) == [NET], hw
    assert resize_steps(NET, NET) == []
    assert resize_steps((1944, 2592), NET) == [(972, 1296), (486, 648), (243, 324), NET]
    # stops at an odd side: 1030 -> 515
    assert resize_steps((1030, 1300), NET) == [(515, 650), NET]


@pytest.mark.parametrize(
    "hw",
    [(1023, 2047), (481, 641), (720, 1280), (480, 640), (960, 1280), (1200, 1600), (1, 1),
     (2, 3), (3, 700), (100, 100), (239, 319), (200, 700), (700, 200)],
)  # fmt: skip
def test_unstaged_sizes_bit_identical(hw):
    """Odd, integer-factor, tiny, upscaled and mixed frames: exactly today's single cv2 call."""
    im = _noise(hw, seed=hw[0] * 7 + hw[1])
    assert np.array_equal(resize_image(im, NET), _direct(im))
    assert np.array_equal(Preprocessor(NET)([im])[0], _direct(im).transpose(2, 0, 1))


@pytest.mark.parametrize("hw", [(1024, 2048), (1080, 1920), (1536, 2048), (968, 1296)])
def test_staged_is_exact_box_means_then_area(hw):
    """Each halving is the rounded-half-up 2x2 mean (no precision lost beyond one rounding per
    stage), the last step cv2 INTER_AREA of the halved frame: the kernel docs/performance.md
    describes, on noise (the worst case for any kernel difference)."""
    im = _noise(hw, seed=hw[1])
    cur = im
    for h, w in resize_steps(hw, NET)[:-1]:
        s = cur.reshape(h, 2, w, 2, 3).astype(np.uint16).sum(axis=(1, 3))
        cur = ((s + 2) // 4).astype(np.uint8)
    assert np.array_equal(
        resize_image(im, NET), cv2.resize(cur, NET[::-1], interpolation=cv2.INTER_AREA)
    )


@pytest.mark.parametrize(
    "hw", [(1024, 2048), (1080, 1920), (2000, 2000), (1536, 2048), (968, 1296), (1026, 642)]
)
def test_staged_close_to_direct(hw):
    """Smooth content: at most 2 grey levels apart, mean < 0.5; a constant frame stays exact;
    synthetic scenes (sharp edges, texture): mean < 2 grey levels."""
    im = np.clip(_smooth(*hw, 3, seed=hw[0]) + 0.5, 0, 255).astype(np.uint8)
    d = np.abs(resize_image(im, NET).astype(np.int16) - _direct(im))
    assert d.max() <= 2 and d.mean() < 0.5, (d.max(), d.mean())
    flat = np.full((*hw, 3), 77, np.uint8)
    assert (resize_image(flat, NET) == 77).all()
    scene = synthetic.generate_scene(5, *hw).image
    d = np.abs(resize_image(scene, NET).astype(np.int16) - _direct(scene))
    assert d.mean() < 2.0, d.mean()


def test_other_network_sizes_and_channels():
    """The plan depends on the target only: a 512x512 graph, 1- and 4-channel frames."""
    im = _noise((2048, 2048))
    assert resize_steps(im.shape[:2], (384, 384)) == [(1024, 1024), (512, 512), (384, 384)]
    out = resize_image(im, (384, 384))
    assert out.shape == (384, 384, 3)
    gray = np.ascontiguousarray(im[..., 0])
    assert resize_image(gray, (384, 384)).shape == (384, 384)
    rgba = np.dstack([im, im[..., :1]])
    assert np.array_equal(resize_image(rgba, (384, 384))[..., :3], out)


def _raw_frame(encoding: str, h: int, w: int, pad: int) -> tuple[int, bytes]:
    """(step, data) of a smooth frame in ``encoding``'s native layout with ``pad`` bytes of row
    padding, built from the encoding table itself so every accepted encoding is covered."""
    nbytes, channels, _layout = encodings._SPEC[encoding]  # noqa: SLF001 - the table under test
    field = _smooth(h, w, channels, seed=len(encoding))
    if nbytes == 2:
        arr = np.clip(field * 257.0, 0, 65535).astype("<u2")
    else:
        arr = np.clip(field + 0.5, 0, 255).astype(np.uint8)
    rows = arr.reshape(h, -1).view(np.uint8)
    step = rows.shape[1] + pad
    buf = np.zeros((h, step), np.uint8)
    buf[:, : rows.shape[1]] = rows
    return step, buf.tobytes()


@pytest.mark.parametrize("encoding", sorted(encodings._SPEC))  # noqa: SLF001
def test_every_encoding_decodes_to_a_frame_the_staged_resize_takes(encoding):
    """Each raw encoding the node accepts, decoded as the node does (read-only views with row
    padding for rgb8, new arrays otherwise), gives the same Preprocessor input as resizing a
    contiguous copy, and stays within the smooth-content tolerance of the single cv2 call (max
    3 here, not 2: YUV 4:2:2 shares chroma between pixel pairs, which adds 2-pixel steps)."""
    h, w = 1080, 1920
    step, data = _raw_frame(encoding, h, w, pad=64)
    rgb = encodings.decode_raw(encoding, h, w, step, False, data)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    x = Preprocessor(NET)([rgb])[0]
    want = resize_image(np.ascontiguousarray(rgb), NET).transpose(2, 0, 1)
    assert np.array_equal(x, want)
    ref = Preprocessor(NET, staged=False)([rgb])[0]
    d = np.abs(x - ref)
    assert d.max() <= 3 and d.mean() < 0.5, (d.max(), d.mean())


def test_preprocessor_buffers_across_camera_sizes_and_threads():
    """Reused per-thread intermediate buffers never leak one frame into the next: cameras of
    different sizes interleaved, and two threads at once, each get the fresh single-frame result."""
    rng = np.random.default_rng(9)
    frames = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
              for hw in [(1024, 2048), (1080, 1920), (1024, 2048), (720, 1280), (1080, 1920)]]  # fmt: skip
    want = [resize_image(f, NET).transpose(2, 0, 1) for f in frames]
    pre = Preprocessor(NET)
    for f, wnt in zip(frames * 2, want * 2):
        assert np.array_equal(pre([f], batch=2)[0], wnt)
    bad: list[int] = []

    def worker(k: int) -> None:
        for i in range(6):
            j = (i + k) % len(frames)
            if not np.array_equal(pre([frames[j]])[0], want[j]):
                bad.append(j)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad


def test_image_input_card_paths_use_the_staged_resize():
    """ImageInput (Panoptic-DeepLab cards): the plain fast path and a BGR / normalised NHWC card
    see the same resized pixels."""
    from panoptic_ros.families.base import OnnxSignature, TensorInfo
    from panoptic_ros.families.image_input import ImageInput

    im = synthetic.generate_scene(2, 1024, 2048).image
    r = resize_image(im, NET).astype(np.float32)
    sig = OnnxSignature(inputs=(TensorInfo("image", (1, 3, *NET), "float32"),), outputs=())
    assert np.array_equal(ImageInput(sig, {})([im], 1)[0], r.transpose(2, 0, 1))
    sig = OnnxSignature(inputs=(TensorInfo("pixels", (1, *NET, 3), "float32"),), outputs=())
    card = {
        "layout": "NHWC",
        "color": "BGR",
        "scale": 1 / 255,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    got = ImageInput(sig, card)([im], 1)[0]
    np.testing.assert_allclose(got, (r[..., ::-1] / 255 - 0.5) / 0.25, rtol=0, atol=1e-5)


def test_eval_single_resize_switch_is_scoped(monkeypatch):
    """``panoptic-ros eval --single-resize`` scores with the single cv2 call (preprocess.STAGED
    False while it runs) and leaves the process default as it was, also when it fails."""
    import argparse

    from panoptic_ros.cli import evaluate
    from panoptic_ros.core import preprocess

    seen: list[bool] = []

    def fake_evaluate(args):
        seen.append(preprocess.STAGED)
        raise evaluate.EvalError("stop here")

    monkeypatch.setattr(evaluate, "_evaluate", fake_evaluate)
    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    assert evaluate.run(p.parse_args(["--synthetic", "1", "--single-resize"])) == 1
    assert evaluate.run(p.parse_args(["--synthetic", "1"])) == 1
    assert seen == [False, True] and preprocess.STAGED is True
    im = _noise((1024, 2048))
    monkeypatch.setattr(preprocess, "STAGED", False)
    assert np.array_equal(Preprocessor(NET)([im])[0], _direct(im).transpose(2, 0, 1))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.int64])
def test_labels_to_input_separable_equals_one_nearest_resize(dtype):
    """The separable label upsampling (cv2 columns, np.take rows) is bit-identical to one
    cv2.resize(INTER_NEAREST) (int64, which cv2 cannot resize: to the int32 result), for the
    camera sizes of the bench and odd / one-axis / downscaling cases."""
    from panoptic_ros.core.preprocess import labels_to_input

    rng = np.random.default_rng(1)
    small = [(240, 320), (60, 80), (7, 5)]
    big = [(1024, 2048), (1080, 1920), (480, 640), (1023, 2047), (240, 1000), (999, 320),
           (100, 100), (3, 2), (1, 1)]  # fmt: skip
    for sh in small:
        lab = rng.integers(0, 30000, sh).astype(dtype)
        ref_src = lab.astype(np.int32) if dtype == np.int64 else lab
        for hw in big:
            got = labels_to_input(lab, hw)
            want = cv2.resize(ref_src, hw[::-1], interpolation=cv2.INTER_NEAREST)
            assert got.dtype == lab.dtype and got.shape == hw and got.flags.c_contiguous
            assert np.array_equal(got, want), (sh, hw)
            assert not np.shares_memory(got, lab)
