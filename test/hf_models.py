"""Tiny random-init Hugging Face mask classification models (Mask2Former, MaskFormer, DETR-seg)
built with transformers on CPU, exported to ONNX the way docs/models-hf.md tells users to, and
cached under .cache/test_models/hf (git-ignored) so a second test run does not rebuild them.

Random init gives flat class scores and mask logits near 0, so no query would pass HF's
thresholds and both sides would agree trivially on "all void". The class head and the mask head's
last layer are therefore scaled up (``boost_heads``): scores near 1 for most queries, masks with
clear inside/outside, so segments, fusion and overlap filtering all actually happen.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "test_models" / "hf"
KINDS = ("mask2former", "maskformer", "detr")
#: class names; ids 3 and 4 are stuff (fused per class by HF's label_ids_to_fuse)
ID2LABEL = {0: "person", 1: "car", 2: "dog", 3: "road", 4: "sky"}
STUFF_IDS = (3, 4)
GRAPH_HW = (64, 96)
NUM_QUERIES = 12
VERSION = "5"
CROSS_ATTN_SCALE = 30.0
CLASS_LOGIT_STD = 4.0
MASK_LOGIT_STD = 4.0
NO_OBJECT_BIAS = -2.0
DETR_VALUE_SCALE = 20.0


def _swin(**kw):
    from transformers import SwinConfig

    return SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        **kw,
    )


def _calibration_input():
    import torch

    g = torch.Generator().manual_seed(1)
    # a frame as the image processor makes it: uniform noise pixels, ImageNet-normalised
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (torch.rand(1, 3, *GRAPH_HW, generator=g) - mean) / std


def _detr_values(model) -> None:
    """DETR's decoder starts from all-zero queries, so a query differs from the others only
    through what its cross-attention reads from the encoder memory; random-init memory is nearly
    the same vector at every position, so every query comes out the same (and ties everywhere).
    Project the mean memory vector out of each cross-attention's value projection and scale it,
    so the queries read different things."""
    import torch

    layers = [m for n, m in model.named_modules() if n.endswith("encoder_attn.v_proj")]
    seen = {}
    hooks = [
        v.register_forward_hook(lambda m, i, o, k=j: seen.__setitem__(k, i[0].detach()))
        for j, v in enumerate(layers)
    ]
    with torch.no_grad():
        model(pixel_values=_calibration_input())
        for hk in hooks:
            hk.remove()
        for j, v in enumerate(layers):
            h = seen[j].reshape(-1, v.in_features)
            mean = h.mean(0)
            proj = torch.eye(v.in_features) - torch.outer(mean, mean) / mean.dot(mean)
            v.weight.copy_(v.weight @ proj * DETR_VALUE_SCALE)
            v.bias.zero_()


def _calibrate_heads(model, cls_head, mask_head) -> None:
    """Scale the heads so random init gives confident, varied queries (module docstring).

    The class head's input is nearly the same vector for every query (random-init decoders mix
    little); the common part is projected out of the head's weights so the per-query differences
    pick the class, then the logits are scaled to CLASS_LOGIT_STD. The mask head's last layer is
    scaled so mask logits have MASK_LOGIT_STD: clear inside / outside instead of ~0.5 everywhere."""
    import torch

    if hasattr(model, "bbox_attention"):  # DETR (module docstring of _detr_values)
        _detr_values(model)
    seen = {}
    hooks = [
        cls_head.register_forward_hook(lambda m, i, o: seen.__setitem__("cls", i[0].detach())),
        mask_head.register_forward_hook(lambda m, i, o: seen.__setitem__("mask", i[0].detach())),
    ]
    x = _calibration_input()

    def project_out_mean(layer, inputs) -> None:
        h = inputs.reshape(-1, inputs.shape[-1])
        mean = h.mean(0)
        proj = torch.eye(h.shape[1]) - torch.outer(mean, mean) / mean.dot(mean)
        layer.weight.copy_(layer.weight @ proj)
        layer.bias.zero_()

    with torch.no_grad():
        model(pixel_values=x)
        for hk in hooks:
            hk.remove()
        project_out_mean(cls_head, seen["cls"])
        if isinstance(mask_head, torch.nn.Linear):  # Mask(2)Former: per-query mask embedding
            project_out_mean(mask_head, seen["mask"])
        out = model(pixel_values=x)
        logits = getattr(out, "class_queries_logits", None)
        logits = out.logits if logits is None else logits
        cls_head.weight.mul_(CLASS_LOGIT_STD / float(logits.std()))
        cls_head.bias[-1] = NO_OBJECT_BIAS  # fewer "no object" queries
        masks = getattr(out, "masks_queries_logits", None)
        masks = out.pred_masks if masks is None else masks
        k = MASK_LOGIT_STD / float(masks.std())
        mask_head.weight.mul_(k)
        if mask_head.bias is not None:
            mask_head.bias.mul_(k)


def build_model(kind: str, seed: int = 0):
    """A tiny random-init model of ``kind`` (eval mode) with heads boosted (module docstring)."""
    import torch
    from transformers import (
        DetrConfig,
        DetrForSegmentation,
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        ResNetConfig,
    )

    torch.manual_seed(seed)
    labels = {"id2label": dict(ID2LABEL), "label2id": {v: k for k, v in ID2LABEL.items()}}
    if kind == "mask2former":
        cfg = Mask2FormerConfig(
            backbone_config=_swin(),
            use_pretrained_backbone=False,
            use_timm_backbone=False,
            hidden_dim=32,
            mask_feature_size=32,
            feature_size=32,
            num_queries=NUM_QUERIES,
            decoder_layers=2,
            encoder_layers=1,
            encoder_feedforward_dim=64,
            dim_feedforward=64,
            num_attention_heads=2,
            **labels,
        )
        model = Mask2FormerForUniversalSegmentation(cfg)
        cls_head = model.class_predictor
        mask_head = model.get_submodule(
            "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0"
        )
    elif kind == "maskformer":
        dec = DetrConfig(
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            num_queries=NUM_QUERIES,
        )
        cfg = MaskFormerConfig(
            backbone_config=_swin(),
            decoder_config=dec,
            fpn_feature_size=32,
            mask_feature_size=32,
            num_queries=NUM_QUERIES,
            **labels,
        )
        model = MaskFormerForInstanceSegmentation(cfg)
        cls_head = model.class_predictor
        mask_head = model.get_submodule("mask_embedder.2.0")
    elif kind == "detr":
        backbone = ResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32, 32, 64],
            depths=[1, 1, 1, 1],
            out_features=["stage1", "stage2", "stage3", "stage4"],
        )
        cfg = DetrConfig(
            use_timm_backbone=False,
            use_pretrained_backbone=False,
            backbone_config=backbone,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            num_queries=NUM_QUERIES,
            **labels,
        )
        model = DetrForSegmentation(cfg)
        cls_head = model.detr.class_labels_classifier
        head = model.mask_head  # transformers 5 names the last conv output_conv, 4.x out_lay
        mask_head = getattr(head, "output_conv", None) or head.out_lay
    else:
        raise ValueError(kind)
    model.eval()
    with torch.no_grad():
        for name, param in model.named_parameters():  # peaky cross-attention: distinct queries
            if ("encoder_attn" in name or "cross_attn" in name) and name.endswith(
                ("q_proj.weight", "k_proj.weight")
            ):
                param.mul_(CROSS_ATTN_SCALE)
        _calibrate_heads(model, cls_head, mask_head)
    return model.eval()


def processor(kind: str, size: dict | None = None):
    """The HF PIL image processor of ``kind`` (torchvision cannot be installed beside our torch)."""
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil
    from transformers.models.mask2former.image_processing_pil_mask2former import (
        Mask2FormerImageProcessorPil,
    )
    from transformers.models.maskformer.image_processing_pil_maskformer import (
        MaskFormerImageProcessorPil,
    )

    cls = {
        "mask2former": Mask2FormerImageProcessorPil,
        "maskformer": MaskFormerImageProcessorPil,
        "detr": DetrImageProcessorPil,
    }[kind]
    size = size or {"height": GRAPH_HW[0], "width": GRAPH_HW[1]}
    return cls(size=size)


def export_onnx(
    model, path: Path, hw: tuple[int, int], dynamic: bool = False, dynamo: bool = False
) -> None:
    """torch.onnx.export with the names optimum-cli uses: the TorchScript exporter (opset 17,
    fixed 1x3xHxW, or dynamic B, H, W as optimum declares them), or ``dynamo`` (torch.export,
    torch's default exporter now; fixed size). DETR keeps pred_boxes too (optimum drops it;
    both are accepted)."""
    import torch

    if model.config.model_type == "detr":
        names = ["logits", "pred_boxes", "pred_masks"]
    else:
        names = ["class_queries_logits", "masks_queries_logits"]

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            out = self.inner(pixel_values=pixel_values)
            return tuple(getattr(out, n) for n in names)

    x = torch.zeros(1, 3, *hw)
    wrapped = Wrapped(model).eval()  # the TorchScript exporter restores the wrapper's mode
    if dynamo:
        torch.onnx.export(
            wrapped, (x,), str(path), input_names=["pixel_values"], output_names=names, dynamo=True
        )
        return
    torch.onnx.export(
        wrapped,
        (x,),
        str(path),
        input_names=["pixel_values"],
        output_names=names,
        opset_version=17,
        dynamo=False,
        dynamic_axes={"pixel_values": {0: "batch_size", 2: "height", 3: "width"}}
        if dynamic
        else None,
    )


#: the processor's own size rule, for graphs exported with dynamic H, W
DYNAMIC_SIZE = {"shortest_edge": 96, "longest_edge": 160}


def model_folder(kind: str, dynamic: bool = False, dynamo: bool = False) -> Path:
    """Folder with model.onnx (raw export, unpatched), config.json, preprocessor_config.json and
    the saved torch weights; built once and cached. ``dynamic``: H, W dynamic in the graph and
    the processor resizing by DYNAMIC_SIZE (only DETR's ResNet traces to a size-free graph).
    ``dynamo``: exported with torch's dynamo exporter instead of TorchScript."""
    tag = ("-dynamic" if dynamic else "") + ("-dynamo" if dynamo else "")
    folder = CACHE / f"{kind}{tag}-v{VERSION}"
    if (folder / "model.onnx").is_file() and (folder / "preprocessor_config.json").is_file():
        return folder
    import warnings

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = build_model(kind)
    model.save_pretrained(tmp)
    processor(kind, DYNAMIC_SIZE if dynamic else None).save_pretrained(tmp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, tmp / "model.onnx", GRAPH_HW, dynamic, dynamo)
    json.loads((tmp / "config.json").read_text())  # written
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def load_torch_model(kind: str, dynamic: bool = False):
    """The cached model's torch twin (same weights as model.onnx)."""
    from transformers import (
        DetrForSegmentation,
        Mask2FormerForUniversalSegmentation,
        MaskFormerForInstanceSegmentation,
    )

    cls = {
        "mask2former": Mask2FormerForUniversalSegmentation,
        "maskformer": MaskFormerForInstanceSegmentation,
        "detr": DetrForSegmentation,
    }[kind]
    return cls.from_pretrained(model_folder(kind, dynamic)).eval()
