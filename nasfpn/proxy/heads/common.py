"""What the heads share: conv towers, the per-shape cache of location grids, the detections type."""

from __future__ import annotations

from typing import Callable, Sequence

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


def sizes_of(feats: Sequence[Tensor]) -> tuple[tuple[int, int], ...]:
    """(H, W) of each level's map."""
    return tuple(tuple(x.shape[-2:]) for x in feats)


class GridCache:
    """`make(sizes)` of the pyramids met so far (their maps' sizes), on each device (a handful of
    shapes)."""

    def __init__(self, make: Callable[[tuple[tuple[int, int], ...]], Tensor]):
        self.make = make
        self.table: dict = {}

    def __call__(self, feats: Sequence[Tensor]) -> Tensor:
        key = (sizes_of(feats), str(feats[0].device))
        if key not in self.table:
            self.table[key] = self.make(key[0]).to(feats[0].device)
        return self.table[key]

