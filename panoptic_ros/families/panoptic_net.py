"""Panoptic-DeepLab-style network in plain torch, plus exportable in-graph post-processing.

``PanopticNet`` (single pass, stride-16 encoder, stride-4 decoders):

    image [B,3,H,W] raw RGB 0..255 --(x - mean) / std, in the graph-->
    backbone: conv3x3/2 stem, depthwise-separable blocks (strides 4, 8, 16; dilated 16-stride
              blocks for context, residual where shapes allow) -> features c4, c8, c16
    semantic decoder: 1x1 projections, bilinear x2 + add, twice (16 -> 8 -> 4) -> class logits
    instance decoder: same shape, own weights -> centre heatmap (1 ch), centre offset (2 ch, dy, dx)
    all heads bilinearly upsampled x4 to the input size

Outputs of ``PanopticNet.forward``: ``semantic_logits [B,C,H,W]``, ``center_heatmap [B,1,H,W]``
(Gaussian-target regression, ~1 at an object centre), ``center_offset [B,2,H,W]`` (pixel offset
from each pixel to its object's centre, in input pixels, (dy, dx)).

``PanopticPostProcess`` turns those into the ONNX contract's integer maps with static shapes and
TensorRT-friendly ops only (ArgMax, MaxPool, Equal/Greater, Where, TopK, MatMul, ArgMin, Gather,
Cast, Reshape, arithmetic): argmax semantics; centre NMS = keep heatmap peaks equal to their
``nms_kernel`` x ``nms_kernel`` max-pool and above ``center_threshold`` (a graph input); fixed-K
TopK; every pixel votes for the kept centre nearest to ``pixel + offset`` (squared distance
expanded as |c|^2 - 2 p.c, one batched MatMul + ArgMin); ``instance = k + 1`` on thing-class
pixels (taxonomy is_thing lookup), 0 elsewhere or when no centre passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_ros.families.model_store import DEFAULT_NMS_KERNEL, DEFAULT_TOP_K

#: ImageNet-style statistics on the 0..255 scale; stored in metadata and baked into the graph
DEFAULT_MEAN = (123.675, 116.28, 103.53)
DEFAULT_STD = (58.395, 57.12, 57.375)
#: constructor keyword arguments of the default architecture (stored in metadata "arch")
ARCH_DEFAULTS: dict[str, Any] = {
    "widths": [16, 24, 48, 96],
    "sem_channels": 64,
    "ins_channels": 48,
    "offset_scale": 16.0,
}
#: per-pixel tie-breaking bias step of the centre NMS (see PanopticPostProcess)
TIE_BREAK_STEP = 1e-5


class ConvBNReLU(nn.Sequential):
    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        pad = dilation * (k - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DWSep(nn.Module):
    """Depthwise 3x3 (stride, dilation) + pointwise 1x1, BN + ReLU each; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.dw = ConvBNReLU(cin, cin, 3, stride, groups=cin, dilation=dilation)
        self.pw = ConvBNReLU(cin, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class Backbone(nn.Module):
    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        w2, w4, w8, w16 = widths
        self.stem = ConvBNReLU(3, w2, 3, 2)
        self.s4 = nn.Sequential(DWSep(w2, w4, 2), DWSep(w4, w4))
        self.s8 = nn.Sequential(DWSep(w4, w8, 2), DWSep(w8, w8), DWSep(w8, w8))
        self.s16 = nn.Sequential(
            DWSep(w8, w16, 2),
            DWSep(w16, w16),
            DWSep(w16, w16, dilation=2),
            DWSep(w16, w16, dilation=4),
            DWSep(w16, w16, dilation=8),
            DWSep(w16, w16, dilation=2),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c4 = self.s4(self.stem(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        return c4, c8, c16


def _hw(t: torch.Tensor) -> tuple[int, int]:
    """Spatial size as Python ints, so the exported graph has constant Resize sizes (static shapes)."""
    return int(t.shape[-2]), int(t.shape[-1])


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=_hw(like), mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """16 -> 8 -> 4 top-down decoder with additive skip projections."""

    def __init__(self, widths: Sequence[int], ch: int) -> None:
        super().__init__()
        _, w4, w8, w16 = widths
        self.p16 = ConvBNReLU(w16, ch, 1)
        self.p8 = ConvBNReLU(w8, ch, 1)
        self.p4 = ConvBNReLU(w4, ch, 1)
        self.f8 = DWSep(ch, ch)
        self.f4 = nn.Sequential(DWSep(ch, ch), DWSep(ch, ch))

    def forward(self, c4: torch.Tensor, c8: torch.Tensor, c16: torch.Tensor) -> torch.Tensor:
        x = self.p16(c16)
        x = self.f8(_up(x, c8) + self.p8(c8))
        return self.f4(_up(x, c4) + self.p4(c4))


class Head(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(DWSep(cin, cin), nn.Conv2d(cin, cout, 1))


class PanopticNet(nn.Module):
    """Backbone + semantic and instance decoders; see the module docstring for I/O."""

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (16, 24, 48, 96),
        sem_channels: int = 64,
        ins_channels: int = 48,
        offset_scale: float = 16.0,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.offset_scale = float(offset_scale)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("in_scale", 1.0 / std_t, persistent=False)
        self.register_buffer("in_bias", -mean_t / std_t, persistent=False)
        self.backbone = Backbone(widths)
        self.sem_decoder = Decoder(widths, sem_channels)
        self.ins_decoder = Decoder(widths, ins_channels)
        self.sem_head = Head(sem_channels, self.num_classes)
        self.center_head = Head(ins_channels, 1)
        self.offset_head = Head(ins_channels, 2)
        for head in (self.center_head, self.offset_head):  # start near "no centre" / zero offset
            nn.init.normal_(head[-1].weight, std=0.01)
            nn.init.zeros_(head[-1].bias)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image * self.in_scale + self.in_bias
        c4, c8, c16 = self.backbone(x)
        s = self.sem_decoder(c4, c8, c16)
        i = self.ins_decoder(c4, c8, c16)
        size = _hw(image)
        logits = F.interpolate(self.sem_head(s), size=size, mode="bilinear", align_corners=False)
        heat = F.interpolate(self.center_head(i), size=size, mode="bilinear", align_corners=False)
        offset = F.interpolate(self.offset_head(i), size=size, mode="bilinear", align_corners=False)
        return logits, heat, offset * self.offset_scale


class PanopticPostProcess(nn.Module):
    """In-graph post-processing with static shapes (see the module docstring).

    forward(logits [B,C,H,W], heat [B,1,H,W], offset [B,2,H,W], center_threshold [1]) ->
        semantic int32 [B,H,W], instance int32 [B,H,W] (0 or k+1), center_score float32 [B,K]
    """

    def __init__(
        self,
        is_thing: Sequence[bool],
        height: int,
        width: int,
        top_k: int = DEFAULT_TOP_K,
        nms_kernel: int = DEFAULT_NMS_KERNEL,
    ) -> None:
        super().__init__()
        if nms_kernel % 2 != 1:
            raise ValueError(f"nms_kernel must be odd, got {nms_kernel}")
        if not 1 <= top_k <= height * width:
            raise ValueError(f"top_k must be in 1..{height * width}, got {top_k}")
        self.top_k = int(top_k)
        self.nms_kernel = int(nms_kernel)
        self.height, self.width = int(height), int(width)
        self.register_buffer(
            "is_thing",
            torch.tensor([bool(t) for t in is_thing], dtype=torch.bool),
            persistent=False,
        )
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32),
            torch.arange(width, dtype=torch.float32),
            indexing="ij",
        )
        self.register_buffer(
            "coords", torch.stack([ys.reshape(-1), xs.reshape(-1)], 1), persistent=False
        )  # [HW,2]
        # Tie-breaker: bilinear upsampling makes flat plateaus at heatmap peaks, where every plateau pixel
        # equals its max-pool and TopK's order among equal values is implementation-defined (torch and ORT
        # differ). A tiny bias, distinct for all pixels of any nms_kernel x nms_kernel window, leaves one
        # winner per plateau; it is far above float32 rounding (1e-5 steps) and moves scores by < 3e-3.
        k = self.nms_kernel
        tb = ((ys.remainder(k) * k + xs.remainder(k)) * TIE_BREAK_STEP).reshape(1, 1, height, width)
        self.register_buffer("tie_break", tb, persistent=False)

    def forward(
        self,
        logits: torch.Tensor,
        heat: torch.Tensor,
        offset: torch.Tensor,
        center_threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, _, H, W = logits.shape
        K = self.top_k
        semantic = torch.argmax(logits, dim=1)  # [B,H,W] int64
        heat = heat + self.tie_break
        pooled = F.max_pool2d(heat, self.nms_kernel, stride=1, padding=self.nms_kernel // 2)
        thr = center_threshold.reshape(1, 1, 1, 1)
        keep = (heat == pooled) & (heat > thr)
        scores = torch.where(keep, heat, torch.zeros_like(heat)).reshape(B, H * W)
        top_v, top_i = torch.topk(scores, K, dim=1)  # [B,K]
        valid = top_v > center_threshold.reshape(1, 1)
        top_f = top_i.to(torch.float32)
        cy = torch.floor(top_f / float(W))
        cx = top_f - cy * float(W)
        centres = torch.stack([cy, cx], 2)  # [B,K,2]
        # predicted centre of every pixel: coords + offset, [B,HW,2]
        pred = self.coords.unsqueeze(0) + offset.reshape(B, 2, H * W).transpose(1, 2)
        # argmin_k |p - c_k|^2 == argmin_k (|c_k|^2 - 2 p.c_k); invalid centres pushed far away
        c2 = (centres * centres).sum(2) + torch.where(
            valid, torch.zeros_like(top_v), torch.full_like(top_v, 1e10)
        )
        dist = c2.unsqueeze(1) - 2.0 * torch.matmul(pred, centres.transpose(1, 2))  # [B,HW,K]
        nearest = torch.argmin(dist, dim=2).reshape(B, H, W)
        thing = self.is_thing[semantic]
        any_centre = valid[:, :1].unsqueeze(2)  # [B,1,1]: TopK sorts, so valid[:,0] == any valid
        instance = torch.where(thing & any_centre, nearest + 1, torch.zeros_like(nearest))
        center_score = torch.where(valid, top_v, torch.zeros_like(top_v))
        return semantic.to(torch.int32), instance.to(torch.int32), center_score


class PanopticExportModel(nn.Module):
    """The node's graph: image, center_threshold -> semantic, instance, center_score."""

    def __init__(self, net: PanopticNet, post: PanopticPostProcess) -> None:
        super().__init__()
        self.net = net
        self.post = post

    def forward(self, image: torch.Tensor, center_threshold: torch.Tensor):
        logits, heat, offset = self.net(image)
        return self.post(logits, heat, offset, center_threshold)


def build_net(
    num_classes: int,
    arch: dict[str, Any] | None = None,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
) -> PanopticNet:
    kw = dict(ARCH_DEFAULTS)
    kw.update(arch or {})
    unknown = set(kw) - set(ARCH_DEFAULTS)
    if unknown:
        raise ValueError(
            f"unknown architecture keys {sorted(unknown)}; known: {sorted(ARCH_DEFAULTS)}"
        )
    return PanopticNet(
        num_classes,
        widths=tuple(kw["widths"]),
        sem_channels=int(kw["sem_channels"]),
        ins_channels=int(kw["ins_channels"]),
        offset_scale=float(kw["offset_scale"]),
        mean=mean,
        std=std,
    )
