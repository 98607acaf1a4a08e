"""Post-op sequences (`post: [relu, conv3x3, bn]`) as nn.Sequential."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..dsl.vocab import CONV_OPS, NORM_OPS


def group_count(channels: int, preferred: int = 32) -> int:
    """GroupNorm groups: at most `preferred`, at least 2 channels per group (so a 1x1 map still
    normalizes over more than one value), and a divisor of `channels`."""
    groups = max(1, min(preferred, channels // 2))
    while channels % groups:
        groups -= 1
    return groups


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1 (EfficientDet's separable conv)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
        )


def make_ops(names: Sequence[str], in_channels: int, out_channels: int) -> nn.Module:
    """Build the ops in order. The first conv maps in_channels -> out_channels; a conv has a bias
    only when no norm follows it directly."""
    layers: list[nn.Module] = []
    width = in_channels
    for i, name in enumerate(names):
        norm_follows = i + 1 < len(names) and names[i + 1] in NORM_OPS
        if name in CONV_OPS:
            if name == "sepconv3x3":
                layers.append(SeparableConv(width, out_channels, bias=not norm_follows))
            else:
                k = 1 if name == "conv1x1" else 3
                layers.append(nn.Conv2d(width, out_channels, k, padding=k // 2, bias=not norm_follows))
            width = out_channels
        elif name == "bn":
            layers.append(nn.BatchNorm2d(width))
        elif name == "gn":
            layers.append(nn.GroupNorm(group_count(width), width))
        elif name == "relu":
            layers.append(nn.ReLU())
        elif name == "swish":
            layers.append(nn.SiLU())
        else:  # the DSL's vocabulary check makes this unreachable for parsed genotypes
            raise ValueError(f"unknown op '{name}'")
    if width != out_channels:
        raise ValueError(f"ops {list(names)} keep {width} channels but {out_channels} are needed: "
                         "add a conv1x1 or conv3x3")
    if len(layers) == 1:
        return layers[0]
    return nn.Sequential(*layers)
