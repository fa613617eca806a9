"""Training targets and a tiny end-to-end `panoptic-ros train` run (real model, real data)."""

import json

import numpy as np

from panoptic_ros.cli import main
from panoptic_ros.core import synthetic
from panoptic_ros.families.model_store import load_model_info, load_torch_model
from panoptic_ros.training.trainer import make_targets


def test_targets_point_to_instance_centres():
    s = synthetic.generate_scene(3, 240, 320)
    sem, heat, off, ow, pw = make_targets(s.semantic, s.instance)
    assert (
        heat.shape == (1, 240, 320)
        and off.shape == (2, 240, 320)
        and 0 <= heat.min()
        and heat.max() <= 1
    )
    for i in range(1, int(s.instance.max()) + 1):
        ys, xs = np.nonzero(s.instance == i)
        cy, cx = ys.mean(), xs.mean()
        assert np.allclose(ys + off[0, ys, xs], cy, atol=1e-3) and np.allclose(
            xs + off[1, ys, xs], cx, atol=1e-3
        )
        assert heat[0, int(round(cy)), int(round(cx))] > 0.9
    assert (ow == (s.instance > 0)).all()
    assert (off[:, s.instance == 0] == 0).all()


def test_train_command_smoke(tmp_path, capsys):
    out = tmp_path / "model"
    log = tmp_path / "loss.jsonl"
    rc = main(
        [
            "train",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch",
            "2",
            "--crop",
            "64",
            "96",
            "--val-scenes",
            "2",
            "--workers",
            "0",
            "--log",
            str(log),
            "--no-progress",
        ]
    )
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"out={out} steps=2 ") and " PQ=" in last
    meta = json.loads((out / "metadata.json").read_text())
    assert (
        meta["train"]["steps"] == 2
        and meta["eval"]["scenes"] == 2
        and meta["input_size"] == [240, 320]
    )
    assert json.loads(log.read_text().splitlines()[0])["step"] == 1
    net = load_torch_model(load_model_info(out), raw=True)
    assert not net.training
