"""visualize.py: panoptic_rgb round trip (incl. PNG transport), overlay properties, speed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import UNLABELED, VOID
from panoptic_ros.core.visualize import (
    BOUNDARY_COLOR,
    MAX_PANOPTIC_ID,
    colorize,
    instance_boundary,
    overlay,
    panoptic_to_rgb,
    rgb_to_panoptic,
)

TAX = Taxonomy.default()


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.int32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=20),
        elements=st.integers(VOID, MAX_PANOPTIC_ID),
    )
)
def test_panoptic_rgb_round_trip(pan):
    rgb = panoptic_to_rgb(pan)
    assert rgb.shape == (*pan.shape, 3) and rgb.dtype == np.uint8
    r = rgb.astype(np.int64)
    np.testing.assert_array_equal(
        r[..., 0] + 256 * r[..., 1] + 65536 * r[..., 2], pan.astype(np.int64) + 1
    )
    np.testing.assert_array_equal(rgb_to_panoptic(rgb), pan)


def test_panoptic_rgb_void_road_and_png_transport():
    sem = np.array([[0, 0, UNLABELED], [6, 6, 4]], np.uint8)
    inst = np.array([[0, 0, 0], [1, 2, 0]], np.uint16)
    pan = TAX.encode_panoptic(sem, inst)
    assert pan[0, 0] == 0 and pan[0, 2] == VOID  # road stuff is id 0: must stay distinct from void
    rgb = panoptic_to_rgb(pan)
    assert tuple(rgb[0, 2]) == (0, 0, 0) and tuple(rgb[0, 0]) != (0, 0, 0)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    back = cv2.imdecode(png, cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(rgb_to_panoptic(np.ascontiguousarray(back)), pan)


@pytest.mark.parametrize(
    "bad", [np.array([[-2]], np.int32), np.array([[MAX_PANOPTIC_ID + 1]], np.int64)]
)
def test_panoptic_rgb_out_of_range(bad):
    with pytest.raises(ValueError):
        panoptic_to_rgb(bad)


def scene(h=48, w=64):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    sem = np.zeros((h, w), np.uint8)
    sem[: h // 3] = 4
    sem[:, :4] = UNLABELED
    inst = np.zeros((h, w), np.uint16)
    sem[20:40, 10:30] = 6
    inst[20:40, 10:20] = 1  # two adjacent cars
    inst[20:40, 20:30] = 2
    return img, sem, inst


def test_overlay_shape_dtype_and_class_differences():
    img, sem, inst = scene()
    img[...] = 128  # flat image: colour differences come from the labels only
    out = overlay(img, sem, inst, TAX)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :4], img[:, :4])  # unlabeled pixels untouched
    sky, road = out[5, 30], out[45, 50]
    assert tuple(sky) != tuple(road)  # classes differ -> colours differ
    exp_sky = (128 + np.array(TAX.classes[4].color)) / 2
    assert np.abs(sky - exp_sky).max() <= 1
    car1, car2 = out[30, 14], out[30, 25]  # interior pixels of the two cars
    assert tuple(car1) != tuple(car2)  # same class, different instances -> distinguishable
    assert tuple(out[30, 19]) == BOUNDARY_COLOR and tuple(out[30, 20]) == BOUNDARY_COLOR
    assert tuple(out[30, 15]) != BOUNDARY_COLOR


def test_overlay_alpha_extremes_and_no_instances():
    img, sem, inst = scene()
    np.testing.assert_array_equal(overlay(img, sem, None, TAX, alpha=0.0), img)
    full = overlay(img, sem, None, TAX, alpha=1.0)
    lut = TAX.color_lut()
    lab = sem != UNLABELED
    np.testing.assert_array_equal(full[lab], lut[sem[lab]])
    with pytest.raises(ValueError):
        overlay(img, sem[:-1], None, TAX)
    with pytest.raises(ValueError):
        overlay(img, sem, None, TAX, alpha=2)


def test_overlay_uint16_semantic_matches_uint8():
    img, sem, inst = scene()
    sem16 = sem.astype(np.uint16)
    sem16[sem == UNLABELED] = 65535
    np.testing.assert_array_equal(overlay(img, sem16, inst, TAX), overlay(img, sem, inst, TAX))


def test_instance_boundary_marks_both_sides_inside_instances_only():
    inst = np.zeros((5, 6), np.uint16)
    inst[1:4, 1:3] = 1
    inst[1:4, 3:5] = 2
    b = instance_boundary(inst)
    assert not b[inst == 0].any()
    assert b[2, 2] and b[2, 3] and b[2, 1] and b[1, 1]
    color, labelled = colorize(np.full((5, 6), 6, np.uint8), inst, TAX)
    assert labelled.all() and tuple(color[2, 2]) != tuple(color[2, 3])
