"""FCOS target assignment. It depends only on the boxes, the image size and the strides, not on
the neck, so it is computed once per dataset and shared by every trial."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .data import Split


@dataclass(frozen=True)
class Locations:
    points: Tensor        # (N, 2) x, y centres of every location, levels finest first
    strides: Tensor       # (N,)
    ranges: Tensor        # (N, 2) min/max of max(l, t, r, b) a location at that level may regress
    sizes: tuple[tuple[int, int], ...]  # (H, W) of each level


@dataclass
class SplitTargets:
    cls: torch.Tensor        # (N, L) class per location, K = background
    box: torch.Tensor        # (N, L, 4) xyxy box each location regresses


def strides_for(levels) -> list[int]:
    return [2 ** lv for lv in levels]


def level_ranges(strides) -> list[float]:
    """max(l, t, r, b) boundaries between levels: 2 strides (FCOS uses 8 at 800 px; these images
    are far smaller, so objects spread over P3..P6 instead of crowding P3)."""
    return [2.0 * s for s in strides[:-1]]


def locations(image_size: int, strides: Sequence[int], ranges: Sequence[float]) -> Locations:
    points, stride_of, range_of, sizes = [], [], [], []
    bounds = [0.0, *ranges, math.inf]
    for i, s in enumerate(strides):
        h = w = math.ceil(image_size / s)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pts = torch.stack([xs.flatten(), ys.flatten()], 1).float() * s + s // 2
        points.append(pts)
        stride_of.append(torch.full((h * w,), float(s)))
        range_of.append(torch.tensor([[bounds[i], bounds[i + 1]]]).expand(h * w, 2))
        sizes.append((h, w))
    return Locations(torch.cat(points), torch.cat(stride_of), torch.cat(range_of), tuple(sizes))


def assign(locs: Locations, boxes: Tensor, labels: Tensor, num_classes: int,
           center_radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """Per location: a class index (num_classes = background) and the xyxy box it regresses.
    A location is positive for a box when it lies within `center_radius` strides of the box
    centre and inside the box, and max(l, t, r, b) falls in its level's range; ties go to the
    smallest box. A box too small to contain any location centre gets the finest-level location
    nearest its centre (else a few-pixel object would never be a positive)."""
    n = locs.points.shape[0]
    if boxes.numel() == 0:
        return torch.full((n,), num_classes, dtype=torch.long), torch.zeros(n, 4)
    x, y = locs.points[:, 0:1], locs.points[:, 1:2]
    l, t = x - boxes[:, 0], y - boxes[:, 1]
    r, b = boxes[:, 2] - x, boxes[:, 3] - y
    ltrb = torch.stack([l, t, r, b], -1)                                  # (N, M, 4)
    inside = ltrb.min(-1).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    radius = locs.strides[:, None] * center_radius
    near = ((x - cx).abs() < radius) & ((y - cy).abs() < radius)
    reach = ltrb.max(-1).values
    in_range = (reach >= locs.ranges[:, 0:1]) & (reach <= locs.ranges[:, 1:2])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n, -1).clone()
    area[~(inside & near & in_range)] = math.inf
    orphans = torch.isinf(area).all(0).nonzero().flatten()
    if len(orphans):
        finest = locs.strides == locs.strides.min()
        d = (x - cx) ** 2 + (y - cy) ** 2
        d[~finest] = math.inf
        nearest = d[:, orphans].argmin(0)
        area[nearest, orphans] = (boxes[orphans, 2] - boxes[orphans, 0]) * (boxes[orphans, 3] - boxes[orphans, 1])
    best_area, best = area.min(1)
    cls = labels[best].clone()
    cls[torch.isinf(best_area)] = num_classes
    return cls, boxes[best]


def split_targets(split: Split, locs: Locations, num_classes: int) -> SplitTargets:
    cls, box = [], []
    for b, lb in zip(split.boxes, split.labels):
        c, t = assign(locs, torch.from_numpy(b), torch.from_numpy(lb), num_classes)
        cls.append(c)
        box.append(t)
    return SplitTargets(torch.stack(cls), torch.stack(box))
