"""Segmenter end to end with the shipped weights on ONNX Runtime (real components, no mocks)."""

import threading

import numpy as np
import pytest

from panoptic_ros.core import synthetic
from panoptic_ros.core.postprocess import PostprocessConfig
from panoptic_ros.core.types import PanopticResult
from panoptic_ros.families.factory import build_segmenter


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    import os

    old = os.environ.get("PANOPTIC_ROS_CACHE")
    os.environ["PANOPTIC_ROS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        with build_segmenter("default", "onnxruntime", threads=2) as s:
            yield s
    finally:
        if old is None:
            os.environ.pop("PANOPTIC_ROS_CACHE", None)
        else:
            os.environ["PANOPTIC_ROS_CACHE"] = old


def _check(r: PanopticResult, hw, seg):
    assert r.semantic.shape == hw and r.instance.shape == hw and r.panoptic.shape == hw
    assert (
        r.semantic.dtype == np.uint8
        and r.instance.dtype == np.uint16
        and r.panoptic.dtype == np.int32
    )
    ids = sorted(np.unique(r.instance[r.instance > 0]).tolist())
    assert ids == [i.id for i in r.instances] == list(range(1, len(ids) + 1))
    lab = r.semantic != 255
    assert np.array_equal(
        r.panoptic[lab], r.semantic[lab].astype(np.int32) * 1000 + r.instance[lab]
    )
    assert (r.panoptic[~lab] == -1).all()
    for inst in r.instances:
        x0, y0, x1, y1 = inst.bbox
        assert 0 <= x0 < x1 <= hw[1] and 0 <= y0 < y1 <= hw[0]
        assert inst.class_id in seg.taxonomy.thing_ids
    assert set(r.timings) == {"preprocess", "infer", "postprocess"}


def test_camera_frame_at_input_resolution(seg):
    scene = synthetic.generate_scene(synthetic.VALIDATION_SEED_START + 3, 480, 640)
    r = seg.segment(scene.image)
    _check(r, (480, 640), seg)
    # the shipped model recognises the scene: most pixels carry the right class
    agree = (r.semantic == scene.semantic)[scene.semantic != 255].mean()
    assert agree > 0.5, agree


@pytest.mark.parametrize("hw", [(1, 1), (37, 53), (720, 1280)])
def test_odd_sizes(seg, hw):
    img = np.random.default_rng(1).integers(0, 256, (*hw, 3), dtype=np.uint8)
    _check(seg.segment(img), hw, seg)


def test_batch_of_mixed_sizes(seg):
    imgs = [
        synthetic.generate_scene(s, h, w).image
        for s, (h, w) in zip((11, 12, 13), [(240, 320), (480, 640), (90, 160)])
    ]
    res = seg.segment_batch(imgs)
    assert len(res) == 3
    for r, im in zip(res, imgs):
        _check(r, im.shape[:2], seg)
    single = seg.segment(imgs[1])
    assert np.array_equal(single.panoptic, res[1].panoptic)
    assert seg.segment_batch([]) == []


def test_update_config_validates(seg):
    old = seg.config
    with pytest.raises(ValueError, match="center_threshold"):
        seg.update_config(center_threshold=2.0)
    with pytest.raises(ValueError, match="unknown config"):
        seg.update_config(bogus=1)
    assert seg.config == old
    new = seg.update_config(center_threshold=0.3, min_instance_area=50)
    assert seg.config == new == PostprocessConfig(0.3, old.stuff_area_min, 50)
    seg.update_config(
        center_threshold=old.center_threshold, min_instance_area=old.min_instance_area
    )


def test_config_updates_from_another_thread(seg):
    img = synthetic.generate_scene(99, 240, 320).image
    stop = threading.Event()
    errors = []

    def tweak():
        t = 0.05
        while not stop.is_set():
            try:
                seg.update_config(center_threshold=t)
            except Exception as exc:  # pragma: no cover - fails the test below
                errors.append(exc)
            t = 0.35 if t == 0.05 else 0.05

    th = threading.Thread(target=tweak)
    th.start()
    try:
        for _ in range(3):
            _check(seg.segment(img), (240, 320), seg)
    finally:
        stop.set()
        th.join()
    seg.update_config(center_threshold=0.1)
    assert not errors


def test_bad_input(seg):
    with pytest.raises(ValueError):
        seg.segment(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        seg.segment(np.zeros((10, 10, 3), np.float32))


def test_fixed_batch_backend_pads_partial_batch(tmp_path, monkeypatch, seg):
    monkeypatch.setenv("PANOPTIC_ROS_CACHE", str(tmp_path))
    imgs = [synthetic.generate_scene(s, 120, 160).image for s in (21, 22, 23)]
    with build_segmenter("default", "onnxruntime", batch=2, threads=2) as s2:
        assert s2.batch_size == 2
        res = s2.segment_batch(imgs)  # 2 + 1 (padded)
    assert len(res) == 3
    for r, im in zip(res, imgs):
        assert np.array_equal(r.panoptic, seg.segment(im).panoptic)
