"""Edges of the graph: take feature `index` from the pool and bring it to the target size.

Each edge type is its own module so that forward has no branching on configuration. The target
size is the exact size of the cell input at the node's level, so odd input sizes work: pooling
uses ceil mode (what stride-2 convs with padding produce) and falls back to adaptive pooling
when a backbone rounds differently.
"""

from __future__ import annotations

from typing import List

import torch.nn.functional as F
from torch import Tensor, nn


class Take(nn.Module):
    """Same level: the feature itself."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, feats: List[Tensor], size: List[int]) -> Tensor:
        return feats[self.index]


class Upsample(nn.Module):
    def __init__(self, index: int, mode: str):
        super().__init__()
        self.index = index
        self.mode = mode
        self.align_corners = False if mode == "bilinear" else None

    def forward(self, feats: List[Tensor], size: List[int]) -> Tensor:
        return F.interpolate(feats[self.index], size=size, mode=self.mode,
                             align_corners=self.align_corners)


def _pool_to(x: Tensor, factor: int, size: List[int], kind: str) -> Tensor:
    if kind == "max":
        y = F.max_pool2d(x, factor, factor, 0, 1, True)
        if y.shape[-2] != size[0] or y.shape[-1] != size[1]:
            y = F.adaptive_max_pool2d(x, size)
    else:
        y = F.avg_pool2d(x, factor, factor, 0, True)
        if y.shape[-2] != size[0] or y.shape[-1] != size[1]:
            y = F.adaptive_avg_pool2d(x, size)
    return y


class PoolDown(nn.Module):
    def __init__(self, index: int, factor: int, kind: str):
        super().__init__()
        self.index = index
        self.factor = factor
        self.kind = kind

    def forward(self, feats: List[Tensor], size: List[int]) -> Tensor:
        return _pool_to(feats[self.index], self.factor, size, self.kind)


class ConvDown(nn.Module):
    """A learned 3x3 stride-2 conv (PANet's bottom-up path), then max-pool for any factor left."""

    def __init__(self, index: int, factor: int, channels: int):
        super().__init__()
        self.index = index
        self.rest = factor // 2
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, feats: List[Tensor], size: List[int]) -> Tensor:
        y = self.conv(feats[self.index])
        if self.rest > 1:
            return _pool_to(y, self.rest, size, "max")
        if y.shape[-2] != size[0] or y.shape[-1] != size[1]:
            y = F.adaptive_max_pool2d(y, size)
        return y


def make_edge(index: int, src_level: int, dst_level: int, upsample: str, downsample: str,
              channels: int) -> nn.Module:
    if src_level == dst_level:
        return Take(index)
    if src_level > dst_level:
        return Upsample(index, upsample)
    factor = 2 ** (dst_level - src_level)
    if downsample == "conv":
        return ConvDown(index, factor, channels)
    return PoolDown(index, factor, "max" if downsample == "maxpool" else "avg")
