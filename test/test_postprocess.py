"""Host post-processing on hand-made arrays."""

import numpy as np
import pytest

from panoptic_ros.core.postprocess import (
    PostprocessConfig,
    build_result,
    instance_records,
)
from panoptic_ros.core.preprocess import Preprocessor, labels_to_input
from panoptic_ros.core.taxonomy import Taxonomy
from panoptic_ros.core.types import Instance

TAX = Taxonomy.default()
ROAD, SIDEWALK, SKY, PERSON, CAR, BIKE = 0, 1, 4, 5, 6, 7


def _maps():
    sem = np.full((8, 10), ROAD, np.int32)
    ins = np.zeros((8, 10), np.int32)
    # centre k=2 (instance value 3): mostly car, a few person pixels -> majority car
    sem[1:4, 1:5] = CAR
    sem[1, 1] = PERSON
    ins[1:4, 1:5] = 3
    # centre k=0 (value 1): a person
    sem[5:8, 7:9] = PERSON
    ins[5:8, 7:9] = 1
    # tiny instance (value 2): 1 pixel bicycle
    sem[6, 2] = BIKE
    ins[6, 2] = 2
    # small stuff patch: 2 sky pixels
    sem[0, 8:10] = SKY
    score = np.zeros(32, np.float32)
    score[:3] = [0.9, 0.5, 0.4]
    return sem, ins, score


def test_relabel_vote_filters():
    sem, ins, score = _maps()
    cfg = PostprocessConfig(center_threshold=0.1, stuff_area_min=3, min_instance_area=2)
    r = build_result(sem, ins, score, (8, 10), TAX, cfg)
    # instances relabelled 1..N in score order: person (k=0) -> 1, car (k=2) -> 2; bike dropped (area 1)
    assert sorted(np.unique(r.instance).tolist()) == [0, 1, 2]
    assert [i.id for i in r.instances] == [1, 2]
    person, car = r.instances
    assert person.class_id == PERSON and car.class_id == CAR
    assert person.score == pytest.approx(0.9) and car.score == pytest.approx(0.4)
    # majority vote rewrote the stray person pixel inside the car
    assert r.semantic[1, 1] == CAR
    # bbox exclusive, area, centroid
    assert car.bbox == (1, 1, 5, 4) and car.area == 12
    assert car.centroid == pytest.approx((2.5, 2.0))
    assert person.bbox == (7, 5, 9, 8) and person.area == 6
    # dropped tiny bike and small sky patch -> unlabeled / void
    assert r.semantic[6, 2] == 255 and r.panoptic[6, 2] == -1 and r.instance[6, 2] == 0
    assert (r.semantic[0, 8:10] == 255).all() and (r.panoptic[0, 8:10] == -1).all()
    # panoptic encoding
    m = r.semantic != 255
    assert np.array_equal(r.panoptic[m], r.semantic[m].astype(np.int32) * 1000 + r.instance[m])
    # ids in the instance image == Instance.id, class per pixel == record class
    for inst in r.instances:
        px = r.instance == inst.id
        assert px.sum() == inst.area
        assert (r.semantic[px] == inst.class_id).all()
    assert (
        r.semantic.dtype == np.uint8
        and r.instance.dtype == np.uint16
        and r.panoptic.dtype == np.int32
    )


def test_upsample_to_input_resolution():
    sem, ins, score = _maps()
    cfg = PostprocessConfig(stuff_area_min=0, min_instance_area=0)
    r = build_result(sem, ins, score, (24, 50), TAX, cfg)
    assert r.semantic.shape == (24, 50) == r.instance.shape == r.panoptic.shape
    car = [i for i in r.instances if i.class_id == CAR][0]
    # car occupies rows 1..3, cols 1..4 at 8x10 -> rows 3..11, cols 5..24 at 24x50
    assert car.bbox == (5, 3, 25, 12)
    assert car.area == 9 * 20


def test_thing_pixels_without_centre_are_void():
    sem = np.full((4, 4), CAR, np.int32)
    ins = np.zeros((4, 4), np.int32)
    r = build_result(
        sem, ins, np.zeros(32, np.float32), (4, 4), TAX, PostprocessConfig(stuff_area_min=0)
    )
    assert (r.semantic == 255).all() and (r.panoptic == -1).all() and r.instances == ()


def test_instance_records_empty():
    assert instance_records(np.zeros((3, 3), np.uint16), np.array([-1]), np.array([0.0])) == ()


def test_config_validation():
    with pytest.raises(ValueError, match="center_threshold"):
        PostprocessConfig(center_threshold=0.0)
    with pytest.raises(ValueError, match="stuff_area_min"):
        PostprocessConfig(stuff_area_min=-1)
    with pytest.raises(ValueError, match="min_instance_area"):
        PostprocessConfig(min_instance_area=1.5)


@pytest.mark.parametrize("hw", [(1, 1), (3, 700), (480, 640), (1080, 1920)])
def test_preprocess_any_size(hw):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    x = Preprocessor((240, 320))([img, img], batch=3)
    assert x.shape == (3, 3, 240, 320) and x.dtype == np.float32
    assert (x[2] == 0).all() and 0 <= x.min() and x.max() <= 255


def test_preprocessor_reused_buffers_match_resize_and_transpose():
    """Preallocated per-thread buffers change nothing: same values as one cv2.resize (the
    ``interpolation`` flag) + transpose, and padding rows are zero again after a fuller batch used
    the same buffer."""
    import cv2

    from panoptic_ros.core.preprocess import interpolation

    rng = np.random.default_rng(3)
    pre = Preprocessor((240, 320))
    for hw in [(480, 640), (240, 320), (100, 100), (481, 641), (200, 700)]:
        imgs = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(2)]
        want = np.zeros((3, 3, 240, 320), np.float32)
        for b, im in enumerate(imgs):
            resized = cv2.resize(im, (320, 240), interpolation=interpolation(hw, (240, 320)))
            want[b] = resized.transpose(2, 0, 1)
        assert np.array_equal(pre(imgs, batch=3), want)
        want[1] = 0
        assert np.array_equal(pre(imgs[:1], batch=3), want)


def test_labels_to_input_exact_nearest():
    lab = np.arange(6, dtype=np.int32).reshape(2, 3)
    up = labels_to_input(lab, (4, 6))
    assert np.array_equal(up, np.repeat(np.repeat(lab, 2, 0), 2, 1))


@pytest.mark.parametrize("hw", [(48, 64), (100, 130), (13, 17), (1, 1), (37, 200)])
def test_counting_at_network_resolution_is_exact(hw):
    """Result equals upsampling the raw maps first and post-processing at the input resolution."""
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    h, w = 24, 32
    sem = rng.integers(0, 8, (h // 4, w // 4)).repeat(4, 0).repeat(4, 1).astype(np.int32)
    ins = np.where(np.isin(sem, TAX.thing_ids), rng.integers(0, 6, sem.shape), 0).astype(np.int32)
    score = np.sort(rng.random(32).astype(np.float32))[::-1] * (np.arange(32) < 5)
    cfg = PostprocessConfig(stuff_area_min=20, min_instance_area=10)
    fast = build_result(sem, ins, score, hw, TAX, cfg)
    slow = build_result(labels_to_input(sem, hw), labels_to_input(ins, hw), score, hw, TAX, cfg)
    assert np.array_equal(fast.semantic, slow.semantic)
    assert np.array_equal(fast.instance, slow.instance)
    assert np.array_equal(fast.panoptic, slow.panoptic)
    assert fast.instances == slow.instances
    for inst in fast.instances:
        ys, xs = np.nonzero(fast.instance == inst.id)
        assert inst.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert inst.area == len(ys)
        assert inst.centroid == pytest.approx((xs.mean(), ys.mean()))


def _reference_result(sem, ins, score, hw, tax, cfg):
    """The definition, written the slow obvious way: upsample the network maps to the input size
    first, then decide per instance with full-size masks. build_result must equal this exactly."""
    C, K = tax.num_classes, len(score)
    S = np.clip(labels_to_input(sem.astype(np.int32), hw).astype(np.int64), 0, C)
    I = np.clip(labels_to_input(ins.astype(np.int32), hw).astype(np.int64), 0, K)  # noqa: E741 (I: instance map, as in the paper)
    thing = np.isin(S, tax.thing_ids)
    I[~thing] = 0
    kept = []  # (k, class) in TopK order
    for k in np.unique(I[I > 0]):
        m = I == k
        votes = [np.count_nonzero(m & (S == t)) for t in sorted(tax.thing_ids)]
        if m.sum() >= max(1, cfg.min_instance_area):
            kept.append(
                (int(k), sorted(tax.thing_ids)[int(np.argmax(votes))])
            )  # ties -> smaller class id
    out_sem = np.where(thing, C, S)
    out_ins = np.zeros(S.shape, np.int64)
    for new, (k, cls) in enumerate(kept, 1):
        m = I == k
        out_sem[m], out_ins[m] = cls, new
    for c in tax.stuff_ids:
        m = out_sem == c
        if 0 < m.sum() < cfg.stuff_area_min:
            out_sem[m] = C
    void = out_sem == C
    records = []
    for new, (k, cls) in enumerate(kept, 1):
        ys, xs = np.nonzero(out_ins == new)
        records.append(
            Instance(
                id=new,
                class_id=cls,
                score=float(score[k - 1]),
                bbox=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
                area=len(ys),
                centroid=(float(xs.mean()), float(ys.mean())),
            )
        )
    return (
        np.where(void, 255, out_sem).astype(np.uint8),
        out_ins.astype(np.uint16),
        np.where(void, -1, out_sem * tax.label_divisor + out_ins).astype(np.int32),
        tuple(records),
    )


def _network_like_maps(seed):
    """A synthetic scene at the network size, made to look like network output: int32 maps, centre
    values 1..K with a few centres missing, stray class blobs inside instances (majority vote), and
    void (255) pixels the post-processing must treat as unlabeled."""
    from panoptic_ros.core.synthetic import generate_scene

    rng = np.random.default_rng(seed)
    sc = generate_scene(seed, 240, 320, TAX)
    sem = sc.semantic.astype(np.int32)
    ins = np.where(np.isin(sem, TAX.thing_ids), sc.instance.astype(np.int32), 0)
    for _ in range(rng.integers(0, 6)):  # stray blobs of another class (thing or stuff)
        y, x = rng.integers(0, 236), rng.integers(0, 316)
        sem[y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = rng.integers(
            0, TAX.num_classes
        )
    ins[np.isin(ins, rng.integers(1, 8, 2))] = (
        0  # centres below threshold: thing pixels without instance
    )
    K = 32
    score = np.zeros(K, np.float32)
    n = int(min(K, ins.max()))
    score[:n] = np.sort(rng.random(n).astype(np.float32))[::-1]
    return sem, np.minimum(ins, K), score


@pytest.mark.parametrize("hw", [(480, 640), (481, 641), (720, 1280), (100, 100)])
def test_build_result_equals_full_resolution_reference(hw):
    """50 scenes per input size: label maps, ids and records identical to the slow definition."""
    cfgs = [
        PostprocessConfig(),
        PostprocessConfig(stuff_area_min=0, min_instance_area=0),
        PostprocessConfig(stuff_area_min=3000, min_instance_area=300),
    ]
    for seed in range(50):
        sem, ins, score = _network_like_maps(seed)
        cfg = cfgs[seed % 3]
        r = build_result(sem, ins, score, hw, TAX, cfg)
        ref_sem, ref_ins, ref_pan, ref_records = _reference_result(sem, ins, score, hw, TAX, cfg)
        assert (
            r.semantic.dtype == np.uint8
            and r.instance.dtype == np.uint16
            and r.panoptic.dtype == np.int32
        )
        assert np.array_equal(r.semantic, ref_sem), (seed, hw)
        assert np.array_equal(r.instance, ref_ins), (seed, hw)
        assert np.array_equal(r.panoptic, ref_pan), (seed, hw)
        assert r.instances == ref_records, (seed, hw)
