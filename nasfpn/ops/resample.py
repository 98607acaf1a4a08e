"""Edges of the graph: bring a feature to the exact size of the node's level; and the extra
levels a backbone lacks (P6, P7). Each resampling mode is one registry entry.

Each edge type is its own module so that forward has no branching on configuration. The target
size is the exact size of the cell input at the node's level, so odd input sizes work: pooling
uses ceil mode (what stride-2 convs with padding produce) and falls back to adaptive pooling
when a backbone rounds differently.
"""

from __future__ import annotations

from typing import List

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Op, Site, get, register


def size_of(x: Tensor) -> List[int]:
    return [x.shape[-2], x.shape[-1]]


class Take(nn.Module):
    """Same level: the feature itself."""

    def forward(self, x: Tensor, size: List[int]) -> Tensor:
        return x


class Upsample(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.align_corners = False if mode == "bilinear" else None

    def forward(self, x: Tensor, size: List[int]) -> Tensor:
        return F.interpolate(x, size=size, mode=self.mode, align_corners=self.align_corners)


def pool_to(x: Tensor, factor: int, size: List[int], kind: str) -> Tensor:
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
    def __init__(self, factor: int, kind: str):
        super().__init__()
        self.factor = factor
        self.kind = kind

    def forward(self, x: Tensor, size: List[int]) -> Tensor:
        return pool_to(x, self.factor, size, self.kind)


class ConvDown(nn.Module):
    """A learned 3x3 stride-2 conv (PANet's bottom-up path), then max-pool for any factor left."""

    def __init__(self, factor: int, channels: int):
        super().__init__()
        self.rest = factor // 2
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, size: List[int]) -> Tensor:
        y = self.conv(x)
        if self.rest > 1:
            return pool_to(y, self.rest, size, "max")
        if y.shape[-2] != size[0] or y.shape[-1] != size[1]:
            y = F.adaptive_max_pool2d(y, size)
        return y


class Extra(nn.Module):
    """Makes a coarser level the backbone lacks from the previous map."""

    def __init__(self, kind: str, in_channels: int, channels: int, relu_first: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.ReLU()] if relu_first else []
        if kind == "conv":
            layers.append(nn.Conv2d(in_channels, channels, 3, stride=2, padding=1))
        else:
            if in_channels != channels:
                layers += [nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels)]
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _extra(kind: str):
    return lambda s: ((kind, s.in_channels, s.channels, s.relu_first), {})


for _op in (
    Op("upsample", "nearest", "nearest-neighbour", Upsample, lambda s: (("nearest",), {})),
    Op("upsample", "bilinear", "bilinear, align_corners=False", Upsample, lambda s: (("bilinear",), {})),
    Op("downsample", "maxpool", "max-pool, kernel = stride = 2^k (ceil mode)", PoolDown,
       lambda s: ((s.factor, "max"), {}), needs=(pool_to,)),
    Op("downsample", "avgpool", "average-pool, kernel = stride = 2^k (ceil mode)", PoolDown,
       lambda s: ((s.factor, "avg"), {}), needs=(pool_to,)),
    Op("downsample", "conv", "a learned 3x3 stride-2 conv, then max-pool for any remaining factor", ConvDown,
       lambda s: ((s.factor, s.channels), {}), needs=(pool_to,)),
    Op("extra", "conv", "3x3 stride-2 conv (RetinaNet P6/P7)", Extra, _extra("conv")),
    Op("extra", "maxpool", "2x2 stride-2 max-pool, after a 1x1 conv + BN when the source width differs "
       "(NAS-FPN, BiFPN)", Extra, _extra("maxpool")),
):
    register(_op)


def edge_op(src_level: int, dst_level: int, upsample: str, downsample: str, channels) -> tuple[Op, Site] | None:
    """The resampling entry of an edge and its site, None for the same level."""
    if src_level == dst_level:
        return None
    if src_level > dst_level:
        return get("upsample", upsample), Site(channels=channels)
    return get("downsample", downsample), Site(channels=channels, factor=2 ** (dst_level - src_level))


def make_edge(src_level: int, dst_level: int, upsample: str, downsample: str, channels: int) -> nn.Module:
    found = edge_op(src_level, dst_level, upsample, downsample, channels)
    return Take() if found is None else found[0].build(found[1])
