"""Mask classification family (HF Mask2Former / MaskFormer / DETR-seg) against transformers itself.

The reference is the library's own pipeline: the HF image processor (PIL backend: torchvision
cannot be installed beside our torch), the model's torch forward and
``post_process_panoptic_segmentation(..., label_ids_to_fuse=stuff, target_sizes=[frame size])``.
Ours: ``prepare`` -> ONNX Runtime on the exported graph -> ``decode``. Models are tiny, random
init, built by transformers and cached (test/hf_models.py).
"""

from __future__ import annotations

import importlib.util
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
PIL_Image = pytest.importorskip("PIL.Image")

import hf_models as H  # noqa: E402

needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers builds the reference models (scripts/requirements.txt)",
)
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from panoptic_ros.core.taxonomy import TaxonomyError  # noqa: E402
from panoptic_ros.core.taxonomy_sources import build_taxonomy, parse_taxonomy  # noqa: E402
from panoptic_ros.families import mask_classification as mc  # noqa: E402
from panoptic_ros.families.base import OnnxSignature, TensorInfo  # noqa: E402
from panoptic_ros.families.model_store import ModelError  # noqa: E402

FRAME_SIZES = [(48, 64), (120, 160), (97, 131)]
#: HF's defaults, then lowered overlap thresholds: random-init masks overlap heavily, so with the
#: default 0.8 no query survives and both sides would agree on "all void" trivially.
OVERLAPS = [0.8, 0.3, 0.0]


def _images(h: int, w: int) -> list[np.ndarray]:
    rng = np.random.default_rng(h * 1000 + w)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    blocks = np.zeros((h, w, 3), np.uint8)  # structured: quadrants, a disc and a gradient
    blocks[: h // 2, : w // 2] = (200, 30, 30)
    blocks[h // 2 :, w // 2 :] = (20, 180, 60)
    blocks[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2] = (240, 240, 20)
    blocks[..., 2] = (255 * xx / max(w - 1, 1)).astype(np.uint8)
    return [noise, blocks]


def _signature(session: ort.InferenceSession) -> OnnxSignature:
    def info(t):
        return TensorInfo(t.name, tuple(t.shape), "float32")

    return OnnxSignature(
        tuple(info(t) for t in session.get_inputs()), tuple(info(t) for t in session.get_outputs())
    )


def _session(folder) -> ort.InferenceSession:
    model = onnx.load(str(folder / "model.onnx"))
    mc.fix_gridsample_double_grid(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _hf_taxonomy(config, stuff_ids=()):
    """config.json ``id2label`` read as the runtime reads it (core/taxonomy_sources), with the
    stuff classes given (HF configs do not say; without them every class is a thing, which is
    HF's behaviour when ``label_ids_to_fuse`` is not given)."""
    names = [
        c.name for c in parse_taxonomy({"id2label": config["id2label"]}, "config.json").classes
    ]
    return build_taxonomy(names, [i not in stuff_ids for i in range(len(names))])


def _taxonomy(card):
    return _hf_taxonomy(card["hf_config"], H.STUFF_IDS)


def _compare(ours, hf_result, hw, score_tol, iou_min=0.98, ious=None, decided=None):
    """Pixel agreement of the semantic maps, and every HF thing segment matched to one of ours
    (same class, IoU, score). Returns (agreement, accepted thing queries).

    HF's segment ids can collide (transformers issue #23461: after a fused stuff class reappears
    the next thing reuses a taken id), merging unrelated segments in its map. We keep them
    apart; a pixel of a collided id agrees when our class is one of that id's classes, and
    IoU / score are checked for the segments whose id is unique."""
    seg = hf_result["segmentation"].numpy().astype(np.int64)
    assert seg.shape == tuple(hw)
    assert ours.semantic.dtype == np.int32 and ours.instance.dtype == np.int32
    assert ours.semantic.shape == tuple(hw) and ours.instance.shape == tuple(hw)
    info = hf_result["segments_info"]
    labels_of: dict[int, set[int]] = {}
    for s in info:
        labels_of.setdefault(s["id"], set()).add(s["label_id"])
    ok = seg <= 0  # HF: 0 (no segment won) or -1 (no query kept): void
    ok &= ours.semantic == -1
    for sid, labels in labels_of.items():
        ok |= (seg == sid) & np.isin(ours.semantic, sorted(labels))
    agree = float(ok[decided].mean()) if decided is not None and decided.any() else float(ok.mean())
    things = [s for s in info if not s["was_fused"]]
    assert len(ours.classes) == len(ours.scores)
    if decided is None or decided.mean() >= 0.99:  # which queries win a pixel at all
        assert len(ours.classes) == len(things)
    unique = {sid for sid in labels_of if sum(1 for s in info if s["id"] == sid) == 1}
    for s in things:
        if s["id"] not in unique:
            continue
        mask = seg == s["id"]
        ids, counts = np.unique(ours.instance[mask], return_counts=True)
        k = int(ids[np.argmax(counts)])
        if decided is not None and not decided[mask].any():
            continue  # float noise picks among tied queries: nothing to compare
        assert k >= 1, "an HF thing segment has no instance of ours"
        mine = ours.instance == k
        if decided is not None:  # leave out pixels whose owner float noise decides
            mine, mask = mine & decided, mask & decided
        iou = (mine & mask).sum() / max((mine | mask).sum(), 1)
        if ious is not None:
            ious.append(iou)
        assert iou >= iou_min or (mine ^ mask).sum() <= 3, f"IoU {iou:.4f}"
        assert ours.classes[k - 1] == s["label_id"]
        assert abs(float(ours.scores[k - 1]) - s["score"]) <= score_tol
    # stuff: fused per class, never an instance
    stuff = np.isin(ours.semantic, H.STUFF_IDS)
    assert not ours.instance[stuff].any()
    _compare.all_pixels = float(ok.mean())  # agreement over every pixel, for the report
    return agree, len(things)


# ------------------------------------------------------------------------------------------
# Building blocks against their references
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resample", [mc.PIL_BILINEAR, mc.PIL_BICUBIC])
def test_numpy_pil_resize_is_bit_exact_with_pillow(resample):
    """The numpy fallback (used when Pillow is absent) reproduces Pillow bit for bit. Pillow 13
    picks the order of its two passes itself; either order of ours must then match exactly."""
    rng = np.random.default_rng(resample)
    cases = [
        ((120, 160), (64, 96)),
        ((48, 64), (64, 96)),
        ((97, 131), (384, 512)),
        ((480, 640), (37, 1001)),
        ((5, 7), (5, 20)),
        ((480, 640), (480, 96)),
        ((31, 640), (400, 640)),
    ]
    for (h, w), (oh, ow) in cases:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = np.asarray(PIL_Image.fromarray(img).resize((ow, oh), resample=resample))
        assert np.array_equal(mc.pil_resize(img, (oh, ow), resample), ref)
        ours = [mc.pil_resize_numpy(img, (oh, ow), resample, v) for v in (False, True)]
        assert any(np.array_equal(o, ref) for o in ours), ((h, w), (oh, ow))
        if h == oh or w == ow:  # one pass only: no order to pick
            assert np.array_equal(ours[0], ref)


def test_bilinear_against_torch_interpolate():
    rng = np.random.default_rng(0)
    for (k, h, w), size in [
        ((7, 16, 24), (384, 384)),
        ((5, 384, 384), (97, 131)),
        ((3, 30, 41), (480, 640)),
    ]:
        x = rng.normal(0, 3, (k, h, w)).astype(np.float32)
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(x)[None], size=size, mode="bilinear", align_corners=False
        )[0].numpy()
        assert np.abs(mc.torch_bilinear(x, size) - ref).max() < 2e-6
        # OpenCV: same geometry, coordinate rounded differently (documented in the module)
        assert np.abs(mc.fast_bilinear(x, size) - ref).max() < 2e-3


@needs_transformers
@pytest.mark.parametrize("kind", H.KINDS)
def test_prepare_matches_hf_processor_for_dynamic_graphs(kind):
    """A graph with dynamic H, W gets HF's own size rule (shortest/longest edge, size_divisor)."""
    size = {"shortest_edge": 96, "longest_edge": 160}
    proc = H.processor(kind, size)
    pre = proc.to_dict()
    sig = OnnxSignature(
        (TensorInfo("pixel_values", ("batch", 3, "height", "width"), "float32"),),
        (
            TensorInfo("class_queries_logits", ("batch", "q", 6), "float32"),
            TensorInfo("masks_queries_logits", ("batch", "q", "h", "w"), "float32"),
        ),
    )
    fam = mc.MaskClassificationFamily(
        _hf_taxonomy({"id2label": H.ID2LABEL}),
        sig,
        {"preprocessor": pre, "hf_config": {"model_type": kind, "id2label": H.ID2LABEL}},
    )
    for hw in [(120, 160), (97, 131), (300, 200)]:
        img = _images(*hw)[0]
        ours = fam.prepare([img], 1).feeds["pixel_values"]
        ref = proc(images=[img], return_tensors="np")["pixel_values"]
        assert ours.shape == ref.shape, (kind, hw)
        assert np.abs(ours - ref).max() <= 1e-6, (kind, hw)


# ------------------------------------------------------------------------------------------
# Decode on crafted outputs: HF defaults, exclusive masks (what trained models produce)
# ------------------------------------------------------------------------------------------
def _crafted_outputs(rng, q=24, c=5, mh=24, mw=32):
    logits = rng.normal(0, 1, (1, q, c + 1)).astype(np.float32)
    labels = rng.integers(0, c + 1, q)  # some queries say "no object"
    logits[0, np.arange(q), labels] += rng.uniform(0, 8, q).astype(np.float32)
    yy, xx = np.mgrid[0:mh, 0:mw]
    masks = np.empty((1, q, mh, mw), np.float32)
    for k in range(q):  # blobs of assorted size, some overlapping, with noise
        cy, cx = rng.uniform(0, mh), rng.uniform(0, mw)
        ry, rx = rng.uniform(2, mh / 4), rng.uniform(2, mw / 4)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        masks[0, k] = 6 * (1 - d) + rng.normal(0, 1, (mh, mw))
    return logits, masks


@needs_transformers
@pytest.mark.parametrize("kind", H.KINDS)
@pytest.mark.parametrize("exact", [True, False], ids=["numpy-exact", "opencv"])
def test_fusion_matches_hf_post_process_on_crafted_outputs(kind, exact):
    proc = H.processor(kind)
    rng = np.random.default_rng(7)
    total_things = total_stuff = 0
    agreements = []
    for trial in range(6):
        logits, masks = _crafted_outputs(rng)
        hw = FRAME_SIZES[trial % len(FRAME_SIZES)]
        if kind == "detr":
            out = types.SimpleNamespace(
                logits=torch.from_numpy(logits), pred_masks=torch.from_numpy(masks)
            )
        else:
            out = types.SimpleNamespace(
                class_queries_logits=torch.from_numpy(logits),
                masks_queries_logits=torch.from_numpy(masks),
            )
        ref = proc.post_process_panoptic_segmentation(
            out, label_ids_to_fuse=set(H.STUFF_IDS), target_sizes=[hw]
        )[0]
        ours = mc.fuse_panoptic(
            logits[0],
            masks[0],
            hw,
            fuse_ids=frozenset(H.STUFF_IDS),
            pre_mask_size=mc.MASK2FORMER_MASK_SIZE if kind == "mask2former" else None,
            exact=exact,
        )
        agree, things = _compare(ours, ref, hw, score_tol=1e-5)
        agreements.append(agree)
        total_things += things
        total_stuff += sum(1 for s in ref["segments_info"] if s["was_fused"])
    print(f"{kind} {'exact' if exact else 'opencv'}: worst agreement {min(agreements):.6f}")
    assert min(agreements) >= (0.99999 if exact else 0.999), agreements
    assert total_things >= 6 and total_stuff >= 2, (total_things, total_stuff)  # not trivial


def _decided(kind, ref_out, threshold, hw, margin=1e-4):
    """Pixels where HF's winning query beats the runner-up by more than ``margin`` (HF's steps in
    torch). Random-init queries are often near-identical (DETR: saturated masks, scores 1.0), so
    elsewhere one ulp of sigmoid / interpolation decides which instance owns the pixel."""
    logits = ref_out.logits if kind == "detr" else ref_out.class_queries_logits
    masks = ref_out.pred_masks if kind == "detr" else ref_out.masks_queries_logits
    if kind == "mask2former":
        masks = torch.nn.functional.interpolate(masks, size=(384, 384), mode="bilinear")
    scores, labels = logits[0].softmax(-1).max(-1)
    keep = (labels != logits.shape[-1] - 1) & (scores > threshold)
    if int(keep.sum()) < 2:
        return np.ones(hw, bool)
    probs = torch.nn.functional.interpolate(
        masks[0].sigmoid()[keep][None], size=hw, mode="bilinear", align_corners=False
    )[0] * scores[keep].view(-1, 1, 1)
    top2 = probs.topk(2, dim=0).values
    return (top2[0] - top2[1]).numpy() > margin


# ------------------------------------------------------------------------------------------
# End to end: prepare -> ONNX Runtime -> decode vs processor -> torch -> post-process
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=H.KINDS)
def hf_model(request):
    kind = request.param
    folder = H.model_folder(kind)
    card = mc.card_from_hf_folder(folder)
    return kind, folder, card, _session(folder), H.load_torch_model(kind)


@needs_transformers
def test_end_to_end_parity_with_transformers(hf_model):
    kind, folder, card, session, torch_model = hf_model
    proc = H.processor(kind)
    fam = mc.MaskClassificationFamily(_taxonomy(card), _signature(session), card, folder)
    assert fam.model_type == kind
    exact = mc.MaskClassificationFamily(_taxonomy(card), _signature(session), card, folder)
    exact.exact_decode = True
    names = [o.name for o in session.get_outputs()]
    worst, pixels, things, segments = 1.0, 0, 0, 0
    ious: list[float] = []
    undecided = 0.0
    worst_all = 1.0
    for hw in FRAME_SIZES:
        for img in _images(*hw):
            prepared = fam.prepare([img], 1)
            pv = proc(images=[img], return_tensors="pt")["pixel_values"]
            assert np.array_equal(prepared.feeds["pixel_values"], pv.numpy())
            outputs = dict(zip(names, session.run(None, prepared.feeds)))
            with torch.no_grad():
                ref_out = torch_model(pixel_values=pv)
            torch_outputs = {n: getattr(ref_out, n).numpy() for n in names if hasattr(ref_out, n)}
            for overlap in OVERLAPS:
                fam.update_config(overlap_area_threshold=overlap)
                ours = fam.decode(outputs, prepared, 0)
                exact.config = fam.config
                ours_on_torch = exact.decode(torch_outputs, prepared, 0)
                ref = proc.post_process_panoptic_segmentation(
                    ref_out,
                    threshold=fam.config["mask_score_threshold"],
                    mask_threshold=fam.config["mask_threshold"],
                    overlap_mask_area_threshold=overlap,
                    label_ids_to_fuse=set(H.STUFF_IDS),
                    target_sizes=[hw],
                )[0]
                # our decode on the very same outputs: instances match one to one
                decided = _decided(kind, ref_out, fam.config["mask_score_threshold"], hw)
                undecided = max(undecided, 1 - float(decided.mean()))
                a, _ = _compare(ours_on_torch, ref, hw, 1e-5, iou_min=0.99, decided=decided)
                assert a >= 0.999, a
                # the whole path (ONNX Runtime): random-init queries are near-ties (DETR's
                # masks differ by ~1e-2 between queries), so ORT-vs-torch noise (~1e-5) can move
                # instance boundaries; the semantic map must still agree
                agree, n = _compare(ours, ref, hw, 1e-4, iou_min=0.0, ious=ious, decided=decided)
                worst = min(worst, agree)
                worst_all = min(worst_all, _compare.all_pixels)
                pixels += hw[0] * hw[1]
                things += n
                segments += len(ref["segments_info"])
    print(
        f"{kind}: worst pixel agreement {worst_all:.6f} (decided pixels {worst:.6f}), "
        f"{segments} HF segments, {things} things, "
        f"IoU (ORT path) min {min(ious, default=1):.4f} median {np.median(ious) if ious else 1:.4f}, "
        f"near-tie pixels up to {undecided:.2%} of a frame"
    )
    assert worst >= 0.999, worst
    assert segments >= 12 and things >= 6, (segments, things)  # the comparison is not trivial


# ------------------------------------------------------------------------------------------
# Contract checks
# ------------------------------------------------------------------------------------------
@needs_transformers
def test_gridsample_fixup_makes_the_torchscript_mask2former_export_load():
    folder = H.model_folder("mask2former")
    with pytest.raises(Exception, match="GridSample"):
        ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    model = onnx.load(str(folder / "model.onnx"))
    assert mc.fix_gridsample_double_grid(model) > 0
    assert mc.fix_gridsample_double_grid(model) == 0  # idempotent
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    other = onnx.load(str(H.model_folder("maskformer") / "model.onnx"))
    assert mc.fix_gridsample_double_grid(other) == 0  # no GridSample: untouched


@needs_transformers
def test_check_onnx_reports_the_fixup_the_node_applies(capsys):
    """check-onnx opens what the family makes runnable, as the factory does: the raw
    TorchScript Mask2Former fails in ONNX Runtime as written and loads after the fix-up."""
    from panoptic_ros.cli import main

    rc = main(["check-onnx", str(H.model_folder("mask2former"))])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "cannot load" in out.err and "GridSample" in out.err
    assert out.out.strip().splitlines()[-1].endswith("ort=ok-fixed family=mask_classification")


@needs_transformers
def test_runnable_onnx_path_caches_the_fixed_copy(tmp_path):
    raw = H.model_folder("mask2former") / "model.onnx"
    fixed = mc.runnable_onnx_path(raw, tmp_path)
    assert fixed != raw and fixed.parent == tmp_path
    ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    assert mc.runnable_onnx_path(raw, tmp_path) == fixed  # cached
    plain = H.model_folder("detr") / "model.onnx"
    assert mc.runnable_onnx_path(plain, tmp_path) == plain


def _sig(outputs, input_name="pixel_values"):
    return OnnxSignature(
        (TensorInfo(input_name, (1, 3, 64, 96), "float32"),),
        tuple(TensorInfo(n, s, "float32") for n, s in outputs),
    )


def test_signatures_recognised_and_refused():
    m2f = _sig([("class_queries_logits", (1, 12, 6)), ("masks_queries_logits", (1, 12, 16, 24))])
    detr = _sig(
        [("logits", (1, 12, 6)), ("pred_boxes", (1, 12, 4)), ("pred_masks", (1, 12, 16, 24))]
    )
    detr_optimum = _sig([("logits", (1, 12, 6)), ("pred_masks", (1, 12, 16, 24))])
    ours = _sig([("semantic", (1, 8, 64, 96))], input_name="image")
    for sig in (m2f, detr, detr_optimum):
        assert mc.MaskClassificationFamily.matches(sig, {})
        assert mc.MaskClassificationFamily.num_classes(sig, {}) == 5
    assert not mc.MaskClassificationFamily.matches(ours, {})
    problems = mc.MaskClassificationFamily.violations(ours, {})
    assert any("'pixel_values' missing" in p for p in problems)
    assert any("class_queries_logits" in p for p in problems)


def test_class_count_mismatch_fails_loudly():
    sig = _sig([("class_queries_logits", (1, 12, 6)), ("masks_queries_logits", (1, 12, 16, 24))])
    four = _hf_taxonomy({"id2label": {i: f"c{i}" for i in range(4)}})
    with pytest.raises(ModelError, match=r"predicts 5 classes.*taxonomy has 4"):
        mc.MaskClassificationFamily(four, sig, {})
    # a dynamic class axis is checked per frame
    dyn = _sig([("class_queries_logits", (1, 12, "c")), ("masks_queries_logits", (1, 12, 16, 24))])
    fam = mc.MaskClassificationFamily(four, dyn, {})
    prepared = fam.prepare([np.zeros((64, 96, 3), np.uint8)], 1)
    outputs = {
        "class_queries_logits": np.zeros((1, 12, 6), np.float32),
        "masks_queries_logits": np.zeros((1, 12, 16, 24), np.float32),
    }
    with pytest.raises(ModelError, match=r"6 = C\+1 class scores.*taxonomy has 4"):
        fam.decode(outputs, prepared, 0)


def test_void_is_minus_one_never_class_zero():
    tax = _hf_taxonomy({"id2label": H.ID2LABEL})
    # every query says "no object": HF returns -1 everywhere
    logits = np.zeros((12, 6), np.float32)
    logits[:, -1] = 10
    seg = mc.fuse_panoptic(logits, np.zeros((12, 16, 24), np.float32), (40, 50))
    assert (seg.semantic == -1).all() and not seg.instance.any() and len(seg.classes) == 0
    # query 0 (class 0) owns the left half; query 1 (class 1) wins the right half but its own mask
    # is the whole frame, so it fails the overlap test: the right half is void, not class 0
    logits = np.full((12, 6), -10, np.float32)
    logits[:, -1] = 10
    logits[0, 0] = logits[1, 1] = 10
    logits[:2, -1] = -10
    masks = np.full((12, 16, 24), -10, np.float32)
    masks[0, :, :12] = 10
    masks[1] = 1.0  # sigmoid 0.73 everywhere
    seg = mc.fuse_panoptic(logits, masks, (40, 60))
    assert (seg.semantic[:, :25] == 0).all() and (seg.semantic[:, 35:] == -1).all()
    assert list(seg.classes) == [0] and seg.instance[:, :25].min() == 1
    assert not seg.instance[:, 35:].any()
    assert tax.num_classes == 5


def test_taxonomy_from_hf_id2label():
    tax = _hf_taxonomy({"id2label": {"1": "b", "0": "a"}}, stuff_ids=(1,))
    assert [c.name for c in tax.classes] == ["a", "b"] and tax.stuff_ids == (1,)
    tax = parse_taxonomy({"id2label": {"0": "LABEL_0", "1": "LABEL_0"}}, "config.json")
    assert [c.name for c in tax.classes] == ["LABEL_0", "LABEL_0_1"]
    with pytest.raises(TaxonomyError, match="id2label"):
        parse_taxonomy({"num_labels": 3}, "config.json")
    with pytest.raises(TaxonomyError, match="0..1"):
        parse_taxonomy({"id2label": {"0": "a", "2": "c"}}, "config.json")


def test_thresholds_are_node_parameters():
    names = [p.name for p in mc.MaskClassificationFamily.PARAMETERS]
    assert names == ["mask_score_threshold", "mask_threshold", "overlap_area_threshold"]
    sig = _sig([("class_queries_logits", (1, 12, 6)), ("masks_queries_logits", (1, 12, 16, 24))])
    fam = mc.MaskClassificationFamily(
        _hf_taxonomy({"id2label": H.ID2LABEL}),
        sig,
        {"thresholds": {"mask_score_threshold": 0.7}},
    )
    assert fam.config["mask_score_threshold"] == 0.7
    with pytest.raises(ValueError, match="overlap_area_threshold"):
        fam.update_config(overlap_area_threshold=1.5)


def test_generic_card_keys_when_there_is_no_preprocessor_config():
    sig = _sig([("class_queries_logits", (1, 12, 6)), ("masks_queries_logits", (1, 12, 16, 24))])
    tax = _hf_taxonomy({"id2label": H.ID2LABEL})
    card = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    fam = mc.MaskClassificationFamily(tax, sig, card)
    img = np.full((64, 96, 3), 255, np.uint8)
    assert np.allclose(fam.prepare([img], 1).feeds["pixel_values"], 2.0)
    with pytest.raises(ValueError, match="RGB NCHW"):
        mc.MaskClassificationFamily(tax, sig, {"color": "BGR"})
    # no card and no preprocessor_config.json: HF's processor defaults (1/255, ImageNet)
    fam = mc.MaskClassificationFamily(tax, sig, {})
    x = fam.prepare([img], 1).feeds["pixel_values"][0, :, 0, 0]
    assert np.allclose(x, (1 - np.array(mc.IMAGENET_MEAN)) / np.array(mc.IMAGENET_STD), atol=1e-6)


@needs_transformers
def test_dynamic_size_detr_follows_the_processor_size_rule():
    """A graph with dynamic H, W (as optimum-cli exports DETR): each frame is resized by the
    processor's shortest/longest-edge rule, so the network sees a different size per frame."""
    folder = H.model_folder("detr", dynamic=True)
    card = mc.card_from_hf_folder(folder)
    session = _session(folder)
    fam = mc.MaskClassificationFamily(_taxonomy(card), _signature(session), card, folder)
    assert fam.fixed_hw is None
    torch_model = H.load_torch_model("detr", dynamic=True)
    proc = H.processor("detr", H.DYNAMIC_SIZE)
    names = [o.name for o in session.get_outputs()]
    fam.update_config(overlap_area_threshold=0.0)
    sizes, segments = set(), 0
    for hw in FRAME_SIZES:
        for img in _images(*hw):
            prepared = fam.prepare([img], 1)
            pv = proc(images=[img], return_tensors="pt")["pixel_values"]
            assert np.array_equal(prepared.feeds["pixel_values"], pv.numpy())
            sizes.add(pv.shape[2:])
            ours = fam.decode(dict(zip(names, session.run(None, prepared.feeds))), prepared, 0)
            with torch.no_grad():
                ref_out = torch_model(pixel_values=pv)
            ref = proc.post_process_panoptic_segmentation(
                ref_out,
                overlap_mask_area_threshold=0.0,
                label_ids_to_fuse=set(H.STUFF_IDS),
                target_sizes=[hw],
            )[0]
            decided = _decided("detr", ref_out, 0.5, hw)
            agree, _ = _compare(ours, ref, hw, 1e-4, iou_min=0.0, decided=decided)
            assert agree >= 0.999
            segments += len(ref["segments_info"])
    assert len(sizes) >= 2 and segments >= 3, (sizes, segments)


@needs_transformers
def test_dynamo_export_of_mask2former_loads_without_the_fixup():
    """torch's dynamo exporter (torch.export) writes a float32 grid: ONNX Runtime loads the graph
    as is, and it runs like the TorchScript graph after the fix-up."""
    dynamo = H.model_folder("mask2former", dynamo=True)
    model = onnx.load(str(dynamo / "model.onnx"))
    assert mc.fix_gridsample_double_grid(model) == 0
    assert mc.runnable_onnx_path(dynamo / "model.onnx") == dynamo / "model.onnx"
    session = ort.InferenceSession(str(dynamo / "model.onnx"), providers=["CPUExecutionProvider"])
    card = mc.card_from_hf_folder(dynamo)
    fam = mc.MaskClassificationFamily(_taxonomy(card), _signature(session), card, dynamo)
    torch_model = H.load_torch_model("mask2former")  # the same weights (seeded build)
    img = _images(120, 160)[1]
    prepared = fam.prepare([img], 1)
    ours = session.run(None, prepared.feeds)
    with torch.no_grad():
        ref = torch_model(pixel_values=torch.from_numpy(prepared.feeds["pixel_values"]))
    assert np.abs(ours[0] - ref.class_queries_logits.numpy()).max() < 1e-3
    assert np.abs(ours[1] - ref.masks_queries_logits.numpy()).max() < 1e-3
