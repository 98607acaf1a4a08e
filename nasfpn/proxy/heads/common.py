"""What the heads share: conv towers, the per-shape cache of location grids, the detections type."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ...ops.post import group_count

Detections = list[tuple[Tensor, Tensor, Tensor]]  # per image: boxes xyxy (n, 4), scores (n,), labels (n,)


def tower(channels: int, depth: int) -> nn.Sequential:
    """`depth` x (3x3 conv, GroupNorm, ReLU) at `channels`."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                   nn.GroupNorm(group_count(channels, max(1, channels // 8)), channels), nn.ReLU()]
    return nn.Sequential(*layers)


class GridCache:
    """`make(sizes)` of the level map sizes met so far, on each device (a handful of shapes)."""

    def __init__(self, make: Callable[[tuple[tuple[int, int], ...]], Tensor]):
        self.make = make
        self.table: dict = {}

    def __call__(self, sizes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
        key = (tuple(sizes), str(device))
        if key not in self.table:
            self.table[key] = self.make(tuple(sizes)).to(device)
        return self.table[key]


def images_of(batch_size: int, per_image: int, device: torch.device) -> Tensor:
    """The image index of each of `batch_size` x `per_image` flattened rows."""
    return torch.arange(batch_size, device=device).repeat_interleave(per_image)
