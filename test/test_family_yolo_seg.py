"""Ultralytics YOLO-seg family: parity with Ultralytics' own predict steps on real exports.

Models: yolov8n-seg / yolo11n-seg / yolo26n-seg built from ultralytics' yaml with random init and
exported with ultralytics' exporter (raw head; YOLO26 also NMS-free with nms=False), see
test/ultralytics_helpers.py. For each model and several frame sizes (square, non-square, odd,
smaller and larger than the network input) our prepare -> ONNX Runtime -> decode must give:
the same network input tensor as ultralytics' preprocess (bit-exact), the same detections
(class equal, score and box close, masks matched by IoU), and >= 99.9 % equal pixels in the
panoptic maps fused with the documented rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core.taxonomy import TaxonomyError
from panoptic_ros.core.taxonomy_sources import build_taxonomy, parse_names, parse_taxonomy
from panoptic_ros.families.base import OnnxSignature, TensorInfo
from panoptic_ros.families.yolo_seg import (
    YoloDetections,
    YoloSegError,
    YoloSegFamily,
    fuse_detections,
    is_end2end,
    letterbox,
    letterbox_params,
)

FRAME_SIZES = [(240, 400), (481, 321), (320, 320), (97, 703), (37, 53), (720, 1280)]


# ------------------------------------------------------------------------------------------------
# Without ultralytics: names, recognition, errors
# ------------------------------------------------------------------------------------------------
def _names_taxonomy(names):
    """Ultralytics ``names`` read as the runtime reads them (core/taxonomy_sources), every class
    a thing as the factory makes them for YoloSegFamily (ALL_THINGS)."""
    labels = parse_names(names, "Ultralytics names")
    return build_taxonomy(labels, [True] * len(labels))


def _signature(nc=80, nm=32, hw=(640, 640), meta=None, e2e=False, k=300):
    n = sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))
    out0 = (1, k, 6 + nm) if e2e else (1, 4 + nc + nm, n)
    return OnnxSignature(
        (TensorInfo("images", (1, 3, *hw), "float32"),),
        (
            TensorInfo("output0", out0, "float32"),
            TensorInfo("output1", (1, nm, hw[0] // 4, hw[1] // 4), "float32"),
        ),
        {"task": "segment", "end2end": str(e2e)} if meta is None else meta,
    )


def test_names_from_metadata_string_dict_and_list():
    assert parse_names("{0: 'person', 1: 'bicycle'}") == ["person", "bicycle"]
    assert parse_names({1: "b", 0: "a"}) == ["a", "b"]
    assert parse_names(["x", "y"]) == ["x", "y"]
    tax = parse_taxonomy({"names": "{0: 'car', 1: 'car', 2: 'bus'}"}, "Ultralytics names")
    assert [c.name for c in tax.classes] == ["car", "car_1", "bus"]
    assert all(c.is_thing for c in tax.classes)


@pytest.mark.parametrize(
    "bad",
    ["__import__('os').system('true')", "{0: 'a', 2: 'b'}", "{}", "42", "{'a': 'b'}", "{0: 'a'"],
)
def test_bad_names_fail_clearly(bad):
    with pytest.raises(TaxonomyError, match="Ultralytics names"):
        parse_taxonomy({"names": bad}, "Ultralytics names")


def test_matches_only_ultralytics_segment_layouts():
    assert YoloSegFamily.matches(_signature(), {})
    assert YoloSegFamily.matches(_signature(e2e=True), {})
    assert not YoloSegFamily.matches(_signature(meta={"task": "detect"}), {})
    assert not YoloSegFamily.matches(_signature(meta={}), {})  # no metadata, no card
    assert YoloSegFamily.matches(_signature(meta={}), {"family": "yolo_seg"})
    assert not YoloSegFamily.matches(_signature(), {"family": "mask2former"})
    sig = _signature()
    no_protos = OnnxSignature(sig.inputs, sig.outputs[:1], sig.metadata)
    assert not YoloSegFamily.matches(no_protos, {})
    assert is_end2end({"args": "{'nms': True}"}, {})
    assert not is_end2end({"end2end": "False", "args": "{'nms': None}"}, {})


def test_class_count_mismatch_names_both_counts():
    tax = _names_taxonomy([f"c{i}" for i in range(19)])
    with pytest.raises(YoloSegError, match=r"nc = 80 classes, but the taxonomy has 19"):
        YoloSegFamily(tax, _signature(nc=80))


def test_parameters_are_ultralytics_predict_defaults():
    fam = YoloSegFamily(_names_taxonomy([str(i) for i in range(80)]), _signature())
    assert fam.config == {"yolo_conf": 0.25, "yolo_iou": 0.7, "yolo_max_det": 300}
    with pytest.raises(ValueError, match="yolo_iou must be in"):
        fam.update_config(yolo_iou=1.5)
    assert fam.input_hw == (640, 640)


def test_overlaps_go_to_the_higher_score_and_void_classes_stay_unlabeled():
    m = np.ones((4, 4), bool)
    dets = YoloDetections(
        boxes=np.zeros((3, 4), np.float32),
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        classes=np.array([1, 0, 5], np.int64),  # class 5 is outside a 2-class taxonomy: void
        masks=[(0, 0, m), (2, 2, m), (5, 5, np.ones((1, 1), bool))],
    )
    seg = fuse_detections(dets, (8, 8), num_classes=2)
    assert seg.instance[3, 3] == 1 and seg.semantic[3, 3] == 1  # overlap -> score 0.9
    assert seg.instance[5, 5] == 2 and seg.semantic[5, 5] == 0
    assert seg.semantic[7, 7] == -1 and seg.instance[7, 7] == 0
    assert list(seg.classes) == [1, 0] and np.allclose(seg.scores, [0.9, 0.8])


# ------------------------------------------------------------------------------------------------
# Parity with ultralytics
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ultra(tmp_path_factory):
    import ultralytics_helpers as helpers

    root = tmp_path_factory.mktemp("ultralytics")
    try:
        helpers.import_ultralytics(root)
    except ImportError as exc:
        pytest.skip(f"ultralytics not importable: {exc}")
    return helpers, root


# (yaml, network input (h, w), names: "coco" / int count / None = ultralytics' placeholders, nms)
MODELS = {
    "v8_coco_320": ("yolov8n-seg.yaml", (320, 320), "coco", None),
    "v11_coco_256x320": ("yolo11n-seg.yaml", (256, 320), "coco", None),
    "v26_raw_7cls_320": ("yolo26n-seg.yaml", (320, 320), 7, None),
    "v26_e2e_coco_320x256": ("yolo26n-seg.yaml", (320, 256), "coco", False),
    "v11_3cls_320": ("yolo11n-seg.yaml", (320, 320), 3, None),
    "v8_133cls_320x256": ("yolov8n-seg.yaml", (320, 256), 133, None),
}


@pytest.fixture(scope="module")
def exported(ultra):
    helpers, root = ultra
    cache = {}

    def get(key):
        if key not in cache:
            yaml_name, imgsz, names, nms = MODELS[key]
            if names == "coco":
                names = helpers.coco_names()
            elif isinstance(names, int):
                names = {i: f"custom_{i}" for i in range(names)}
            cache[key] = helpers.build_yolo_seg_onnx(root / "models", yaml_name, imgsz, names, nms)
        return cache[key]

    return get


def _family_for(path):
    """What the factory does for a bare Ultralytics .onnx: signature + metadata -> family."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def info(v):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in v.type.tensor_type.shape.dim
        )
        return TensorInfo(v.name, dims, "float32")

    sig = OnnxSignature(
        tuple(info(v) for v in model.graph.input),
        tuple(info(v) for v in model.graph.output),
        {p.key: p.value for p in model.metadata_props},
    )
    assert YoloSegFamily.matches(sig, {})
    tax = _names_taxonomy(sig.metadata["names"])
    return YoloSegFamily(tax, sig, source=path)


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _fuse_reference(ref, hw):
    """The documented overlap rule applied to Ultralytics' masks (highest score on top)."""
    inst = np.zeros(hw, np.int32)
    for k in range(len(ref["masks"]) - 1, -1, -1):
        inst[ref["masks"][k]] = k + 1
    sem = np.concatenate([[-1], ref["classes"]])[inst]
    return inst, sem


def _compare(fam, sess, ref_model, rgb, stats):
    prepared = fam.prepare([rgb], 1)
    outputs = dict(zip(["output0", "output1"], sess.run(["output0", "output1"], prepared.feeds)))
    ref = ref_model(rgb)
    # 1. the network input: ultralytics LetterBox + preprocess, bit-exact
    np.testing.assert_array_equal(prepared.feeds["images"], ref["input"])
    # 2. detections
    dets = fam.detections(outputs, prepared, 0)
    hw = rgb.shape[:2]
    ours_masks = dets.full_masks(hw)
    n_ref = len(ref["scores"])
    assert len(dets.scores) == n_ref, (len(dets.scores), n_ref)
    used = set()
    for k in range(n_ref):
        same_cls = [
            j for j in range(n_ref) if dets.classes[j] == ref["classes"][k] and j not in used
        ]
        assert same_cls, f"reference detection {k} (class {ref['classes'][k]}) has no counterpart"

        def iou(j):
            a, b = ours_masks[j], ref["masks"][k]
            union = np.logical_or(a, b).sum()
            return 1.0 if union == 0 else np.logical_and(a, b).sum() / union

        # among same-class candidates with the same score (ties occur), the closest box
        close = [j for j in same_cls if abs(float(dets.scores[j]) - float(ref["scores"][k])) < 1e-5]
        assert close, (
            f"reference detection {k}: no same-class detection with score {ref['scores'][k]}"
        )
        j = min(
            close, key=lambda j: (float(np.abs(dets.boxes[j] - ref["boxes"][k]).sum()), -iou(j))
        )
        used.add(j)
        assert abs(float(dets.scores[j]) - float(ref["scores"][k])) < 1e-5
        np.testing.assert_allclose(dets.boxes[j], ref["boxes"][k], atol=1e-3, rtol=1e-5)
        assert iou(j) >= 0.99, f"detection {k}: mask IoU {iou(j):.4f}"
        stats["mask_px_diff"] += int(np.logical_xor(ours_masks[j], ref["masks"][k]).sum())
        stats["mask_px"] += int(np.logical_or(ours_masks[j], ref["masks"][k]).sum())
    # 3. the fused panoptic maps
    seg = fam.decode(outputs, prepared, 0)
    inst_ref, sem_ref = _fuse_reference(ref, hw)
    stats["px"] += inst_ref.size
    stats["sem_equal"] += int((seg.semantic == sem_ref).sum())
    stats["thing_px"] += int((inst_ref > 0).sum())
    stats["detections"] += n_ref
    stats["classes"].update(int(c) for c in ref["classes"])
    assert (seg.semantic == sem_ref).mean() >= 0.999
    # instance ids: same partition (the same pixels grouped together)
    pairs = np.unique(np.stack([seg.instance.ravel(), inst_ref.ravel()]), axis=1)
    assert pairs.shape[1] <= len(np.unique(inst_ref)) + 2  # allows a pixel or two of slack
    return n_ref


def _new_stats():
    return {
        "px": 0,
        "sem_equal": 0,
        "thing_px": 0,
        "mask_px": 0,
        "mask_px_diff": 0,
        "detections": 0,
        "classes": set(),
    }


@pytest.mark.timeout(900)
@pytest.mark.parametrize("key", list(MODELS))
def test_parity_with_ultralytics_predict(ultra, exported, key):
    helpers, _ = ultra
    path = exported(key)
    fam = _family_for(path)
    sess = _session(path)
    ref_model = helpers.UltralyticsReference(path)
    names = ref_model.predictor.model.names
    assert [c.name for c in fam.taxonomy.classes][: len(names)] == [
        names[i] for i in range(len(names))
    ]
    rng = np.random.default_rng(1)
    stats = _new_stats()
    for hw in FRAME_SIZES:
        _compare(fam, sess, ref_model, helpers.smooth_image(rng, *hw), stats)
    # thresholds changed at run time, the same way in both
    fam.update_config(yolo_conf=0.5, yolo_iou=0.45, yolo_max_det=7)
    ref_strict = helpers.UltralyticsReference(path, conf=0.5, iou=0.45, max_det=7)
    for hw in FRAME_SIZES[:3]:
        _compare(fam, sess, ref_strict, helpers.smooth_image(rng, *hw), stats)
    print(
        f"\n{key}: {stats['detections']} detections of {len(stats['classes'])} classes, "
        f"semantic equal {stats['sem_equal'] / stats['px']:.6f} of {stats['px']} px "
        f"({stats['thing_px']} thing px), per-mask xor {stats['mask_px_diff']} / {stats['mask_px']} px"
    )
    assert stats["detections"] >= 10, "too few detections for the comparison to mean anything"
    assert stats["sem_equal"] / stats["px"] >= 0.999


def test_letterbox_equals_ultralytics(ultra):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(3)
    for hw, net in [
        ((481, 321), (320, 320)),
        ((37, 53), (256, 320)),
        ((720, 1280), (640, 640)),
        ((1, 999), (320, 320)),
    ]:
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        ref = LetterBox(net, auto=False, stride=32)(image=img)
        np.testing.assert_array_equal(letterbox(img, letterbox_params(hw, net)), ref)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "key", ["v8_coco_320", "v11_coco_256x320", "v26_raw_7cls_320", "v26_e2e_coco_320x256"]
)
def test_close_to_ultralytics_predict_on_the_torch_model(ultra, exported, key):
    """Ours on the exported ONNX vs Ultralytics' predict steps on the torch model it came from:
    the export and ONNX Runtime's float differences (~1e-5) may flip a detection that sits on a
    threshold, so this is a tolerance check (the decode itself is checked exactly above)."""
    helpers, _ = ultra
    path = exported(key)
    fam = _family_for(path)
    sess = _session(path)
    ref_model = helpers.UltralyticsReference(
        helpers.load_torch_model(path), imgsz=fam.input_hw, nms=MODELS[key][3]
    )
    rng = np.random.default_rng(5)
    px = equal = matched = total = 0
    misses = []
    for hw in FRAME_SIZES:
        rgb = helpers.smooth_image(rng, *hw)
        prepared = fam.prepare([rgb], 1)
        outputs = dict(
            zip(["output0", "output1"], sess.run(["output0", "output1"], prepared.feeds))
        )
        ref = ref_model(rgb)
        np.testing.assert_array_equal(prepared.feeds["images"], ref["input"])
        dets = fam.detections(outputs, prepared, 0)
        ours = dets.full_masks(rgb.shape[:2])
        total += max(len(ref["scores"]), len(dets.scores))
        free = set(range(len(dets.scores)))
        for k in range(len(ref["scores"])):
            # same class, score within float noise, then the nearest box
            cands = [
                j
                for j in free
                if dets.classes[j] == ref["classes"][k]
                and abs(dets.scores[j] - ref["scores"][k]) < 1e-4
            ]
            if not cands:
                continue
            j = min(cands, key=lambda j: float(np.abs(dets.boxes[j] - ref["boxes"][k]).sum()))
            union = max(int((ours[j] | ref["masks"][k]).sum()), 1)
            if np.abs(dets.boxes[j] - ref["boxes"][k]).max() < 0.5 and (
                (ours[j] & ref["masks"][k]).sum() >= 0.9 * union or union <= 20
            ):
                free.discard(j)
                matched += 1
            else:
                misses.append((hw, k, float(np.abs(dets.boxes[j] - ref["boxes"][k]).max()), union))
        seg = fam.decode(outputs, prepared, 0)
        _, sem_ref = _fuse_reference(ref, rgb.shape[:2])
        px += sem_ref.size
        equal += int((seg.semantic == sem_ref).sum())
    print(
        f"\n{key} vs torch: {matched}/{total} detections matched, semantic equal {equal / px:.6f} of {px} px"
    )
    assert total >= 10
    assert matched >= 0.98 * total, misses[:10]
    assert equal / px >= 0.999


def test_registry_hooks_violations_and_class_count():
    assert YoloSegFamily.violations(_signature(), {}) == []
    why = YoloSegFamily.violations(_signature(meta={}), {})
    assert any("task='segment'" in w for w in why)
    sig = _signature()
    why = YoloSegFamily.violations(OnnxSignature(sig.inputs, sig.outputs[:1], sig.metadata), {})
    assert any("missing" in w for w in why)
    assert YoloSegFamily.num_classes(_signature(nc=19), {}) == 19
    e2e = _signature(
        e2e=True, meta={"task": "segment", "end2end": "True", "names": "{0: 'a', 1: 'b'}"}
    )
    assert YoloSegFamily.num_classes(e2e, {}) == 2
    assert YoloSegFamily.ALL_THINGS


def test_nms_equals_ultralytics_torchnms(ultra):
    import torch
    from ultralytics.utils.nms import TorchNMS

    from panoptic_ros.families.yolo_seg import nms_greedy

    rng = np.random.default_rng(7)
    for n, thr in [(1, 0.7), (50, 0.7), (400, 0.45), (400, 0.0), (400, 1.0)]:
        xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
        wh = rng.uniform(5, 120, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.random(n).astype(np.float32)
        ref = TorchNMS.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        np.testing.assert_array_equal(nms_greedy(boxes, scores, thr), ref)
        np.testing.assert_array_equal(nms_greedy(boxes, scores, thr, 5), ref[:5])


@pytest.mark.parametrize(
    "proto_hw, input_hw, frame_hw",
    [
        ((40, 50), (100, 130), (150, 170)),
        ((80, 80), (320, 320), (720, 1280)),
        ((64, 80), (256, 320), (37, 53)),
        ((80, 80), (320, 320), (480, 640)),
        ((80, 80), (320, 320), (960, 960)),
    ],
)
def test_masks_equal_ultralytics_process_mask_and_scale_masks(ultra, proto_hw, input_hw, frame_hw):
    """masks_to_frame against ops.process_mask(upsample=True) + ops.scale_masks > 0.5 on random
    smooth prototypes, incl. a non-integer prototype scale (the general numpy path)."""
    import cv2
    import torch
    from ultralytics.utils import ops

    from panoptic_ros.families.yolo_seg import masks_to_frame

    rng = np.random.default_rng(11)
    nm = 32
    coarse = rng.normal(0, 1, (proto_hw[0] // 4, proto_hw[1] // 4, nm)).astype(np.float32)
    protos = np.ascontiguousarray(cv2.resize(coarse, proto_hw[::-1]).transpose(2, 0, 1))
    n = 40
    xy = rng.uniform(-20, input_hw[1], (n, 2)).astype(np.float32)
    wh = rng.uniform(2, input_hw[0] * 0.8, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], 1)
    coef = rng.normal(0, 1, (n, nm)).astype(np.float32)
    lb = letterbox_params(frame_hw, input_hw)
    masks, keep = masks_to_frame(protos, coef, boxes, lb)
    ref = ops.process_mask(
        torch.from_numpy(protos),
        torch.from_numpy(coef),
        torch.from_numpy(boxes.copy()),
        input_hw,
        upsample=True,
    )
    ref_keep = (ref.amax((-2, -1)) > 0).numpy()
    np.testing.assert_array_equal(keep, ref_keep)
    ref_frame = (ops.scale_masks(ref[ref_keep][None].float(), frame_hw)[0] > 0.5).numpy()
    ours = YoloDetections(
        boxes[keep], np.zeros(keep.sum(), np.float32), np.zeros(keep.sum(), np.int64), masks
    )
    diff = int((ours.full_masks(frame_hw) != ref_frame).sum())
    print(f"\n{proto_hw}->{input_hw}->{frame_hw}: {int(keep.sum())} masks, {diff} pixels differ")
    assert keep.sum() >= 10 and diff <= ref_frame.size * 1e-4, diff
