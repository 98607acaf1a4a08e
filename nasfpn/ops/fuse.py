"""Combine ops and fusion weightings: a list of same-shape maps in, one map out. Each is one
registry entry, at the end of this file."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dsl.vocab import Arity
from .registry import Op, Site, get, register


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
        self.eps = 1e-4  # BiFPN's epsilon

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


def mean_of_inputs(conv: nn.Conv2d) -> Tensor:
    """The 1x1 weights that average the equal-width maps concatenated into `conv`."""
    k = conv.in_channels // conv.out_channels
    eye = torch.eye(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device)
    return (torch.cat([eye] * k, dim=1) / k)[:, :, None, None]


def _sum_or_fusion(site: Site) -> Op:
    """combine 'sum' is a plain sum of one input or without a fusion, else the fusion's module."""
    return get("fusion", "none" if site.n_inputs == 1 else site.fusion)


def _weighted(mode: str):
    return lambda s: ((s.n_inputs, s.channels, mode), {})


def _inputs_and_width(s: Site):
    return (s.n_inputs, s.channels), {}


_WEIGHTED = {"fast_normalized": ("BiFPN: sum(relu(w_i) x_i) / (eps + sum relu(w_j)), one scalar per input", "w+"),
             "softmax": ("sum(softmax(w)_i x_i), one scalar per input", "sm+"),
             "channel_fast_normalized": ("fast_normalized with one weight per input and channel", "cw+"),
             "channel_softmax": ("softmax with one weight per input and channel", "csm+")}

for _op in (
    Op("combine", "sum", "element-wise sum of the resampled inputs (weighted by `fusion`)", Sum, label="+",
       select=_sum_or_fusion),
    Op("combine", "global_attention", "NAS-FPN 'global pooling' as in the TF reference: "
       "coarser + finer * sigmoid(global max pool of coarser); exactly 2 inputs", GlobalAttention,
       lambda s: ((s.coarse,), {}), label="GP", arity=Arity(2, 2),
       symmetric=lambda levels: len(set(levels)) == len(levels)),  # the coarser gates; a tie makes order matter
    Op("combine", "global_attention_mmdet", "mmdetection's GlobalPoolingCell: "
       "second + first * sigmoid(global avg pool of second); exactly 2 inputs", GlobalAttentionMMDet,
       label="GP'", arity=Arity(2, 2), symmetric=lambda levels: False),
    Op("combine", "concat", "concatenate the resampled inputs, then a 1x1 conv back to `channels`", ConcatConv,
       lambda s: ((s.n_inputs, s.channels), {"bias": not s.norm_follows}), label="cat", arity=Arity(2),
       init=lambda m: {m.conv: mean_of_inputs(m.conv)}),
    Op("fusion", "none", "plain sum", Sum, label="+"),
    *(Op("fusion", mode, about, WeightedSum, _weighted(mode), label=label, arity=Arity(2))
      for mode, (about, label) in _WEIGHTED.items()),
    Op("fusion", "channel_attention", "SE-style: weights per input and channel from the pooled sum, softmax "
       "over inputs", ChannelAttentionFuse, _inputs_and_width, label="SE+", arity=Arity(2)),
    Op("fusion", "spatial_attention", "AugFPN adaptive spatial fusion: a weight map per input from the "
       "concatenation", SpatialAttentionFuse, _inputs_and_width, label="ASF", arity=Arity(2)),
):
    register(_op)
