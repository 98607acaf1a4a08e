"""Named blocks for what plain merge nodes cannot say: AugFPN's residual feature augmentation,
M2Det's scale-wise aggregation (SFAM), DetectoRS' ASPP feedback and gated fusion. Their registry
entries are at the end of this file."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dsl.vocab import Arity
from .fuse import SpatialAttentionFuse, mean_of_inputs
from .registry import Op, register


class ResidualAugmentation(nn.Module):
    """AugFPN RFA: adaptive average pools at `ratios` of the input size, a 1x1 conv each, bilinear
    upsampling back, adaptive spatial fusion of the results."""

    def __init__(self, channels: int, ratios: Sequence[float]):
        super().__init__()
        self.ratios = [float(r) for r in ratios]
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in self.ratios)
        self.fuse = SpatialAttentionFuse(len(self.ratios), channels)

    def forward(self, xs: List[Tensor]) -> Tensor:
        x = xs[0]
        h, w = x.shape[-2], x.shape[-1]
        contexts: List[Tensor] = []
        for i, conv in enumerate(self.convs):
            r = self.ratios[i]
            pooled = F.adaptive_avg_pool2d(x, [max(1, int(h * r)), max(1, int(w * r))])
            contexts.append(F.interpolate(conv(pooled), size=[h, w], mode="bilinear",
                                          align_corners=False))
        return self.fuse(contexts)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                                nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True))


class LastStack(nn.Module):
    def forward(self, stacks: List[List[Tensor]]) -> List[Tensor]:
        return stacks[-1]


class ScaleWiseAggregation(nn.Module):
    """M2Det SFAM: per level, concatenate every stack's output, SE channel attention, then a 1x1
    conv back to `channels` (the neck's uniform width)."""

    def __init__(self, n_levels: int, repeats: int, channels: int):
        super().__init__()
        self.attend = nn.ModuleList(SqueezeExcite(repeats * channels) for _ in range(n_levels))
        self.reduce = nn.ModuleList(nn.Conv2d(repeats * channels, channels, 1) for _ in range(n_levels))

    def forward(self, stacks: List[List[Tensor]]) -> List[Tensor]:
        outs: List[Tensor] = []
        for level, (attend, reduce) in enumerate(zip(self.attend, self.reduce)):
            outs.append(reduce(attend(torch.cat([s[level] for s in stacks], dim=1))))
        return outs


class ASPP(nn.Module):
    """DetectoRS' ASPP on each fed-back level: a 1x1 branch for dilation 1, dilated 3x3 branches
    otherwise, the last branch on the globally pooled map; branches concatenated to `channels`."""

    def __init__(self, channels: int, dilations: Sequence[int]):
        super().__init__()
        n = len(dilations)
        widths = [channels // n + (1 if i < channels % n else 0) for i in range(n)]
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, w, 1 if d == 1 else 3, padding=0 if d == 1 else d, dilation=d)
            for w, d in zip(widths, dilations))

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        outs: List[Tensor] = []
        last = len(self.branches) - 1
        for i, branch in enumerate(self.branches):
            y = F.relu(branch(pooled if i == last else x))
            if i == last:
                y = y.expand(-1, -1, x.shape[-2], x.shape[-1])
            outs.append(y)
        return torch.cat(outs, dim=1)


class GatedFusion(nn.Module):
    """DetectoRS: s = sigmoid(conv1x1(new)); s * new + (1 - s) * old. Zero-initialised, so the
    first recursion starts as an even blend."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, new: Tensor, old: Tensor) -> Tensor:
        s = torch.sigmoid(self.gate(new))
        return s * new + (1 - s) * old


class Feedback(nn.Module):
    """DetectoRS RFP: ASPP of the pyramid, fed back into the backbone; `fusion` (a module class
    taking the width) blends each pass into the previous one."""

    def __init__(self, channels: int, dilations: Sequence[int], n_backbone_levels: int, steps: int,
                 fusion: type):
        super().__init__()
        self.steps = steps
        self.n_backbone_levels = n_backbone_levels
        self.aspp = ASPP(channels, dilations)
        self.fuse = fusion(channels)

    def signals(self, outs: Sequence[Tensor]) -> List[Tensor]:
        """What the backbone receives: ASPP of each pyramid level the backbone produces."""
        return [self.aspp(x) for x in outs[: self.n_backbone_levels]]

    def merge(self, new: Sequence[Tensor], old: Sequence[Tensor]) -> List[Tensor]:
        return [self.fuse(a, b) for a, b in zip(new, old)]


for _op in (
    Op("block", "residual_augmentation", "AugFPN residual feature augmentation: adaptive average pools at "
       "several ratios, 1x1 conv each, bilinear upsample, adaptive spatial fusion", ResidualAugmentation,
       lambda s: ((s.channels, list(s.param_dict["ratios"])), {}), label="RFA", arity=Arity(1, 1),
       params={"ratios": ("fractions", [0.1, 0.2, 0.3], "adaptive-pool sizes as fractions of the input size")},
       needs=(SpatialAttentionFuse,), symmetric=lambda levels: False),
    Op("aggregate", "last", "the neck's outputs are the last stack's outputs", LastStack),
    Op("aggregate", "sfam", "M2Det SFAM: per level, concatenate every stack's output, SE channel attention, "
       "1x1 conv", ScaleWiseAggregation, lambda s: ((s.n_levels, s.repeats, s.channels), {}),
       needs=(SqueezeExcite,), init=lambda m: {r: mean_of_inputs(r) for r in m.reduce}),
    Op("feedback_fusion", "gated", "DetectoRS: s = sigmoid(conv1x1(new)); s * new + (1 - s) * old",
       GatedFusion, lambda s: ((s.channels,), {})),
):
    register(_op)
