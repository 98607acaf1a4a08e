"""Combine ops and fusion weightings: a list of same-shape maps in, one map out."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FAST_NORMALIZED_EPS = 1e-4


class Sum(nn.Module):
    def forward(self, xs: List[Tensor]) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class WeightedSum(nn.Module):
    """BiFPN-style learned weights, one per input (or per input and channel)."""

    def __init__(self, n: int, channels: int, mode: str):
        super().__init__()
        per_channel = mode.startswith("channel_")
        self.softmax = mode.endswith("softmax")
        self.weight = nn.Parameter(torch.ones(n, channels) if per_channel else torch.ones(n))
        self.per_channel = per_channel
        self.eps = FAST_NORMALIZED_EPS

    def forward(self, xs: List[Tensor]) -> Tensor:
        if self.softmax:
            w = torch.softmax(self.weight, dim=0)
        else:
            w = F.relu(self.weight)
            w = w / (w.sum(dim=0) + self.eps)
        if self.per_channel:
            w = w[:, None, :, None, None]
        out = xs[0] * w[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * w[i]
        return out


class ChannelAttentionFuse(nn.Module):
    """Selective-kernel style: pooled sum -> bottleneck MLP -> a softmax over inputs per channel."""

    def __init__(self, n: int, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.n = n
        self.reduction = reduction
        self.squeeze = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU())
        self.excite = nn.Conv2d(hidden, n * channels, 1)

    def forward(self, xs: List[Tensor]) -> Tensor:
        stacked = torch.stack(xs, dim=1)  # B, n, C, H, W
        pooled = stacked.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        logits = self.excite(self.squeeze(pooled))
        b, c = pooled.shape[0], pooled.shape[1]
        w = torch.softmax(logits.view(b, self.n, c, 1, 1), dim=1)
        return (stacked * w).sum(dim=1)


class SpatialAttentionFuse(nn.Module):
    """AugFPN adaptive spatial fusion: concat -> 1x1 conv -> ReLU -> 3x3 conv -> one sigmoid map
    per input -> weighted sum."""

    def __init__(self, n: int, channels: int):
        super().__init__()
        self.weights = nn.Sequential(nn.Conv2d(n * channels, channels, 1), nn.ReLU(),
                                     nn.Conv2d(channels, n, 3, padding=1))

    def forward(self, xs: List[Tensor]) -> Tensor:
        w = torch.sigmoid(self.weights(torch.cat(xs, dim=1)))
        out = xs[0] * w[:, 0:1]
        for i in range(1, len(xs)):
            out = out + xs[i] * w[:, i:i + 1]
        return out


class GlobalAttention(nn.Module):
    """NAS-FPN 'global pooling' as in the TF reference: the coarser input's global max, through
    a sigmoid, gates the finer input; the coarser input is added. `coarse` is decided at build
    time from the inputs' source levels (the first input on a tie)."""

    def __init__(self, coarse: int):
        super().__init__()
        self.coarse = coarse

    def forward(self, xs: List[Tensor]) -> Tensor:
        coarse, fine = xs[self.coarse], xs[1 - self.coarse]
        return coarse + fine * torch.sigmoid(torch.amax(coarse, dim=(2, 3), keepdim=True))


class GlobalAttentionMMDet(nn.Module):
    """mmdetection's GlobalPoolingCell: second + first * sigmoid(global avg pool of second)."""

    def forward(self, xs: List[Tensor]) -> Tensor:
        return xs[1] + xs[0] * torch.sigmoid(xs[1].mean(dim=(2, 3), keepdim=True))


class ConcatConv(nn.Module):
    def __init__(self, n: int, channels: int, bias: bool):
        super().__init__()
        self.conv = nn.Conv2d(n * channels, channels, 1, bias=bias)

    def forward(self, xs: List[Tensor]) -> Tensor:
        return self.conv(torch.cat(xs, dim=1))


def make_combine(combine: str, fusion: str, n: int, channels: int, coarse: int,
                 norm_follows: bool) -> nn.Module:
    if combine == "global_attention":
        return GlobalAttention(coarse)
    if combine == "global_attention_mmdet":
        return GlobalAttentionMMDet()
    if combine == "concat":
        return ConcatConv(n, channels, bias=not norm_follows)
    if fusion == "none" or n == 1:
        return Sum()
    if fusion == "channel_attention":
        return ChannelAttentionFuse(n, channels)
    if fusion == "spatial_attention":
        return SpatialAttentionFuse(n, channels)
    return WeightedSum(n, channels, fusion)
