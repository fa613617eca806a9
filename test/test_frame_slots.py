"""ROS-free tests: latest-frame-wins slots, the inference worker, rolling stats."""

from __future__ import annotations

import threading
import time

import pytest

from panoptic_ros.core.frame_slots import FrameSlots, InferenceWorker
from panoptic_ros.core.stats import CameraStats, RateMeter, Throttle, Window


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_latest_frame_wins_and_drops_are_counted():
    slots = FrameSlots(["a"])
    assert slots.put("a", 1) is False
    assert slots.put("a", 2) is True
    assert slots.put("a", 3) is True
    frames = slots.take(4, timeout=0)
    assert [f.msg for f in frames] == [3]
    assert frames[0].seq == 3
    assert slots.dropped == {"a": 2}
    assert slots.take(1, timeout=0) == []


def test_take_returns_oldest_first_up_to_max_n():
    clock = FakeClock()
    slots = FrameSlots(["a", "b", "c"], clock=clock)
    clock.t = 3.0
    slots.put("c", "c1")
    clock.t = 1.0
    slots.put("a", "a1")
    clock.t = 2.0
    slots.put("b", "b1")
    assert [f.camera for f in slots.take(2, timeout=0)] == ["a", "b"]
    assert [f.camera for f in slots.take(2, timeout=0)] == ["c"]


def test_unknown_camera_rejected():
    with pytest.raises(KeyError, match="unknown camera"):
        FrameSlots(["a"]).put("zz", 1)


def test_take_blocks_until_put_and_close_wakes():
    slots = FrameSlots(["a"])
    got = []
    t = threading.Thread(target=lambda: got.append(slots.take(1, timeout=5)))
    t.start()
    time.sleep(0.05)
    slots.put("a", "x")
    t.join(2)
    assert [f.msg for f in got[0]] == ["x"]
    t = threading.Thread(target=lambda: got.append(slots.take(1, timeout=5)))
    t.start()
    slots.close()
    t.join(2)
    assert not t.is_alive() and got[1] == []


def _worker(slots, max_batch=1, fail_on=("bad",), before_infer=None):
    calls, published, bad, errors = [], [], [], []

    def decode(f):
        if f.msg in fail_on:
            raise ValueError(f"cannot decode {f.msg}")
        return f.msg.upper()

    def infer(imgs):
        calls.append(list(imgs))
        if before_infer is not None:
            before_infer()
        return [i + "!" for i in imgs]

    w = InferenceWorker(
        slots,
        decode=decode,
        infer=infer,
        publish=lambda f, img, res, ms: published.append((f.camera, res)),
        on_bad=lambda f, e: bad.append((f.camera, str(e))),
        on_error=errors.append,
        max_batch=max_batch,
    )
    return w, calls, published, bad, errors


def test_worker_batches_ready_cameras_and_survives_bad_frames():
    slots = FrameSlots(["a", "b", "c"])
    w, calls, published, bad, errors = _worker(slots, max_batch=2)
    slots.put("a", "x")
    slots.put("b", "bad")
    slots.put("c", "z")
    w.process(slots.take(2, timeout=0))  # a + b: b is bad, a inferred alone
    w.process(slots.take(2, timeout=0))  # c
    assert calls == [["X"], ["Z"]]
    assert published == [("a", "X!"), ("c", "Z!")]
    assert bad == [("b", "cannot decode bad")]
    assert errors == []


def test_worker_batch_of_two():
    slots = FrameSlots(["a", "b"])
    w, calls, published, _, _ = _worker(slots, max_batch=2)
    slots.put("a", "x")
    slots.put("b", "y")
    w.process(slots.take(2, timeout=0))
    assert calls == [["X", "Y"]]
    assert sorted(published) == [("a", "X!"), ("b", "Y!")]


def _wait(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_worker_thread_under_load_runs_the_newest_frame_next():
    """While one frame is in inference, 99 more arrive: the worker runs the newest next (so a
    frame waits at most one inference, whatever the input rate), the 98 in between are counted
    as dropped, none is lost silently. Inference is held by an event, not timed by sleeps."""
    slots = FrameSlots(["a"])
    busy, release = threading.Event(), threading.Event()

    def hold():
        busy.set()
        assert release.wait(10)

    w, calls, published, _, errors = _worker(slots, before_infer=hold)
    w.start()
    slots.put("a", "f0")
    assert busy.wait(10)  # f0 is in inference
    for i in range(1, 100):
        slots.put("a", f"f{i}")
    release.set()
    _wait(lambda: len(published) == 2)
    assert w.stop(2) and not w.running
    assert published == [("a", "F0!"), ("a", "F99!")]
    assert slots.dropped["a"] == 98 and errors == []


def test_worker_reports_inference_errors_and_continues():
    slots = FrameSlots(["a"])
    errors = []
    n = {"calls": 0}

    def infer(imgs):
        n["calls"] += 1
        if n["calls"] == 1:
            raise RuntimeError("boom")
        return imgs

    out = []
    w = InferenceWorker(
        slots,
        decode=lambda f: f.msg,
        infer=infer,
        publish=lambda f, i, r, ms: out.append(r),
        on_bad=lambda f, e: None,
        on_error=errors.append,
    )
    slots.put("a", 1)
    w.process(slots.take())
    slots.put("a", 2)
    w.process(slots.take())
    assert [str(e) for e in errors] == ["boom"] and out == [2]


# ---- stats -------------------------------------------------------------------------


def test_window_mean_p99():
    w = Window(100)
    for v in range(1, 101):
        w.add(v)
    assert w.mean == pytest.approx(50.5)
    assert 98.0 <= w.p99 <= 100.0
    for _ in range(100):
        w.add(7)
    assert w.mean == 7 and w.p99 == 7 and len(w) == 100
    assert Window(3).mean == 0.0 and Window(3).p99 == 0.0
    with pytest.raises(ValueError):
        Window(0)


def test_rate_meter():
    clock = FakeClock()
    r = RateMeter(10, clock)
    assert r.rate() == 0.0
    for i in range(11):
        r.tick(i * 0.1)
    clock.t = 1.0
    assert r.rate() == pytest.approx(10.0)
    clock.t = 100.0
    assert r.rate() == 0.0  # stale


def test_camera_stats_snapshot():
    s = CameraStats(window=10)
    s.on_received()
    s.on_received()
    s.on_dropped()
    s.on_bad("unknown encoding 'foo'")
    s.on_processed(latency_ms=30.0, infer_ms=20.0)
    s.on_tracked(3, 0.5)
    s.on_tracked(2, 0.25)
    snap = s.snapshot()
    assert (snap.received, snap.processed, snap.dropped, snap.bad) == (2, 1, 1, 1)
    assert (snap.tracks_live, snap.track_mean_ms) == (2, 0.375)  # live now, mean over window
    assert dict(snap.as_pairs())["tracks_live"] == "2"
    assert snap.latency_mean_ms == 30.0 and snap.overhead_mean_ms == 10.0
    assert dict(snap.as_pairs())["frames_bad"] == "1"
    assert snap.last_fault == "unknown encoding 'foo'"


def test_throttle_per_key():
    clock = FakeClock()
    t = Throttle(5.0, clock)
    assert t.ready("a") == (True, 0)
    assert t.ready("a") == (False, 0)
    assert t.ready("b") == (True, 0)
    clock.t = 5.0
    assert t.ready("a") == (True, 1)
