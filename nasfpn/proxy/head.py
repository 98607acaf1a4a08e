"""An anchor-free dense head shared across levels (FCOS-style: the CornerNet argument, no anchor
boxes and their hyper-parameters): per location, class logits, the distances to the box sides
(l, t, r, b) and a centerness logit."""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.post import group_count


def _tower(channels: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                   nn.GroupNorm(group_count(channels, max(1, channels // 8)), channels), nn.ReLU()]
    return nn.Sequential(*layers)


class DenseHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], depth: int = 2,
                 prior: float = 0.01):
        super().__init__()
        self.strides = list(strides)
        self.cls_tower = _tower(channels, depth)
        self.box_tower = _tower(channels, depth)
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.ctr = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(strides)))
        for conv in (self.cls, self.box, self.ctr):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Flattened over levels (finest first) and locations (row-major):
        class logits (B, N, K), box side distances in pixels (B, N, 4), centerness logits (B, N)."""
        cls_out: List[Tensor] = []
        box_out: List[Tensor] = []
        ctr_out: List[Tensor] = []
        for i, x in enumerate(feats):
            c = self.cls_tower(x)
            b = self.box_tower(x)
            cls_out.append(self.cls(c).flatten(2).transpose(1, 2))
            dist = F.relu(self.box(b) * self.scales[i]) * self.strides[i]
            box_out.append(dist.flatten(2).transpose(1, 2))
            ctr_out.append(self.ctr(b).flatten(1))
        return torch.cat(cls_out, 1), torch.cat(box_out, 1), torch.cat(ctr_out, 1)
