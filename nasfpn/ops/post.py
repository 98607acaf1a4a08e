"""Post-ops (`post: [relu, conv3x3, bn]`), each one registry entry, and the sequence builder."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from .registry import Op, Site, get, register


def group_count(channels: int, preferred: int = 32) -> int:
    """GroupNorm groups: at most `preferred`, at least 2 channels per group (so a 1x1 map still
    normalizes over more than one value), and a divisor of `channels`."""
    groups = max(1, min(preferred, channels // 2))
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(channels), channels)


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1 (EfficientDet's separable conv)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
        )


def _conv(k: int):
    return lambda s: ((s.in_channels, s.channels, k), {"padding": k // 2, "bias": not s.norm_follows})


def _width(s: Site):
    return (s.in_channels,), {}


for _op in (
    Op("post", "relu", "ReLU", nn.ReLU, label="R"),
    Op("post", "swish", "swish / SiLU", nn.SiLU, label="S"),
    Op("post", "conv1x1", "1x1 conv (bias only when no norm follows)", nn.Conv2d, _conv(1), label="C1",
       role="conv"),
    Op("post", "conv3x3", "3x3 conv (bias only when no norm follows)", nn.Conv2d, _conv(3), label="C",
       role="conv"),
    Op("post", "sepconv3x3", "depthwise 3x3 then pointwise 1x1 conv", SeparableConv,
       lambda s: ((s.in_channels, s.channels), {"bias": not s.norm_follows}), label="SC", role="conv"),
    Op("post", "bn", "BatchNorm", nn.BatchNorm2d, _width, label="B", role="norm"),
    Op("post", "gn", "GroupNorm (32 groups; fewer for narrow widths, at least 2 channels per group)",
       group_norm, _width, label="G", role="norm", needs=(group_count,)),
):
    register(_op)


def post_sites(names: Sequence[str], in_channels, out_channels) -> list[tuple[Op, Site]]:
    """Each op of the sequence with where it sits: the first conv maps in_channels ->
    out_channels; a conv has a bias only when a norm follows it directly."""
    sites = []
    width = in_channels
    for i, name in enumerate(names):
        op = get("post", name)
        norm_follows = i + 1 < len(names) and get("post", names[i + 1]).role == "norm"
        sites.append((op, Site(channels=out_channels, in_channels=width, norm_follows=norm_follows)))
        if op.role == "conv":
            width = out_channels
    return sites


def make_ops(names: Sequence[str], in_channels: int, out_channels: int) -> nn.Module:
    """The post-op sequence as one module: the op itself when there is one, else nn.Sequential
    (empty for none)."""
    if in_channels != out_channels and not any(get("post", n).role == "conv" for n in names):
        raise ValueError(f"ops {list(names)} keep {in_channels} channels but {out_channels} are needed: "
                         "add a conv1x1 or conv3x3")
    layers = [op.build(site) for op, site in post_sites(names, in_channels, out_channels)]
    if len(layers) == 1:
        return layers[0]
    return nn.Sequential(*layers)
