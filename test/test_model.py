"""PanopticNet and the in-graph post-processing: shapes, dtypes, NMS/TopK/grouping semantics."""

import numpy as np
import pytest
import torch

from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.families.panoptic_net import PanopticExportModel, PanopticPostProcess, build_net

TAX = Taxonomy.default()
IS_THING = TAX.is_thing_lut()[:-1].tolist()


def test_net_shapes():
    torch.manual_seed(0)
    net = build_net(TAX.num_classes).eval()
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        logits, heat, off = net(x)
    assert (
        logits.shape == (2, 8, 64, 96)
        and heat.shape == (2, 1, 64, 96)
        and off.shape == (2, 2, 64, 96)
    )
    assert logits.dtype == heat.dtype == off.dtype == torch.float32


def test_export_model_outputs():
    net = build_net(TAX.num_classes).eval()
    mod = PanopticExportModel(net, PanopticPostProcess(IS_THING, 64, 96, top_k=16)).eval()
    with torch.no_grad():
        s, i, c = mod(torch.rand(2, 3, 64, 96) * 255, torch.tensor([0.1]))
    assert s.shape == (2, 64, 96) and s.dtype == torch.int32
    assert i.shape == (2, 64, 96) and i.dtype == torch.int32
    assert c.shape == (2, 16) and c.dtype == torch.float32
    assert int(i.min()) >= 0 and int(i.max()) <= 16


def _synthetic_heads(H=40, W=50):
    """Two objects: a car on the left (centre (10, 10)), a person on the right (centre (30, 40))."""
    logits = torch.zeros(1, 8, H, W)
    logits[0, 0] = 1.0  # road everywhere
    logits[0, 6, 2:19, 2:19] = 5.0  # car
    logits[0, 5, 22:39, 32:49] = 5.0  # person
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    heat = torch.zeros(1, 1, H, W)
    for cy, cx, peak in ((10, 10, 0.9), (30, 40, 0.6)):
        heat[0, 0] = torch.maximum(
            heat[0, 0], peak * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 8)
        )
    off = torch.zeros(1, 2, H, W)
    left = xs < 25
    off[0, 0] = torch.where(left, 10 - ys, 30 - ys)
    off[0, 1] = torch.where(left, 10 - xs, 40 - xs)
    return logits, heat, off


def test_postprocess_groups_by_offsets():
    logits, heat, off = _synthetic_heads()
    post = PanopticPostProcess(IS_THING, 40, 50, top_k=4, nms_kernel=7)
    s, i, c = post(logits, heat, off, torch.tensor([0.1]))
    assert c[0, :2].tolist() == pytest.approx([0.9, 0.6], abs=3e-3) and c[0, 2:].tolist() == [0, 0]
    inst = i[0].numpy()
    assert set(np.unique(inst[2:19, 2:19])) == {1}  # car -> highest centre k=0 -> 1
    assert set(np.unique(inst[22:39, 32:49])) == {2}
    assert (inst[s[0].numpy() == 0] == 0).all()  # stuff pixels get 0
    # threshold is an input: above the person's peak only the car centre survives
    s2, i2, c2 = post(logits, heat, off, torch.tensor([0.7]))
    assert c2[0, 1] == 0 and set(np.unique(i2[0].numpy()[22:39, 32:49])) == {1}
    # above both: no centre -> all zero
    _, i3, c3 = post(logits, heat, off, torch.tensor([0.95]))
    assert int(i3.max()) == 0 and float(c3.max()) == 0


def test_bad_postprocess_arguments():
    with pytest.raises(ValueError):
        PanopticPostProcess(IS_THING, 10, 10, nms_kernel=4)
    with pytest.raises(ValueError):
        PanopticPostProcess(IS_THING, 4, 4, top_k=17)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_net(8, {"depth": 3})


def test_plateau_peak_gives_one_centre():
    """A flat-topped peak (as bilinear upsampling makes) yields exactly one centre, not one per plateau pixel."""
    H, W = 30, 30
    heat = torch.zeros(1, 1, H, W)
    heat[0, 0, 10:12, 10:14] = 0.8  # 2x4 plateau
    logits = torch.zeros(1, 8, H, W)
    logits[0, 6] = 1.0
    post = PanopticPostProcess(IS_THING, H, W, top_k=8, nms_kernel=7)
    _, inst, score = post(logits, heat, torch.zeros(1, 2, H, W), torch.tensor([0.1]))
    assert int((score > 0).sum()) == 1
    assert set(np.unique(inst.numpy()).tolist()) == {1}
