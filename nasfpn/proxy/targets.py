"""FCOS target assignment. It depends only on the boxes, the canvas size and the strides, not on
the neck: the loader's workers compute it for each batch (loader.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Locations:
    points: Tensor        # (N, 2) x, y centres of every location, levels finest first
    strides: Tensor       # (N,)
    ranges: Tensor        # (N, 2) min/max of max(l, t, r, b) a location at that level may regress
    sizes: tuple[tuple[int, int], ...]  # (H, W) of each level


def strides_for(levels) -> list[int]:
    return [2 ** lv for lv in levels]


def level_ranges(strides) -> list[float]:
    """max(l, t, r, b) boundaries between levels: 2 strides (FCOS uses 8 at 800 px; these images
    are far smaller, so objects spread over P3..P6 instead of crowding P3)."""
    return [2.0 * s for s in strides[:-1]]


def locations(canvas: int | tuple[int, int], strides: Sequence[int], ranges: Sequence[float]) -> Locations:
    """Every location of a canvas (H, W), or of a square one of side `canvas`."""
    height, width = (canvas, canvas) if isinstance(canvas, int) else canvas
    stride_of, range_of = [], []
    bounds = [0.0, *ranges, math.inf]
    sizes = tuple((math.ceil(height / s), math.ceil(width / s)) for s in strides)
    for i, (s, (h, w)) in enumerate(zip(strides, sizes)):
        stride_of.append(torch.full((h * w,), float(s)))
        range_of.append(torch.tensor([[bounds[i], bounds[i + 1]]]).expand(h * w, 2))
    return Locations(grid_points(sizes, strides), torch.cat(stride_of), torch.cat(range_of), sizes)


def grid_points(sizes: Sequence[tuple[int, int]], strides: Sequence[int]) -> Tensor:
    """(N, 2) x, y centres of every location of maps of these (H, W), levels finest first."""
    points = []
    for (h, w), s in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        points.append(torch.stack([xs.flatten(), ys.flatten()], 1).float() * s + s // 2)
    return torch.cat(points)


def assign(locs: Locations, boxes: Tensor, labels: Tensor, num_classes: int,
           center_radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """The targets of one image (see assign_batch)."""
    cls, box = assign_batch(locs, [boxes], [labels], num_classes, center_radius)
    return cls[0], box[0]


def assign_batch(locs: Locations, boxes: Sequence[Tensor], labels: Sequence[Tensor], num_classes: int,
                 center_radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """Per image and location: a class index (num_classes = background) and the xyxy box it
    regresses, (B, N) and (B, N, 4). A location is positive for a box when it lies within
    `center_radius` strides of the box centre and inside the box, and max(l, t, r, b) falls in
    its level's range; ties go to the smallest box. A box too small to contain any location
    centre gets the finest-level location nearest its centre (else a few-pixel object would
    never be a positive). The images' boxes are padded to one count (padding never matches), so
    a batch costs one pass of tensor ops rather than one per image."""
    n, count = locs.points.shape[0], len(boxes)
    m = max(1, max(len(b) for b in boxes))
    padded = torch.zeros(count, m, 4)
    classes = torch.zeros(count, m, dtype=torch.long)
    valid = torch.zeros(count, m, dtype=torch.bool)
    for k, (bx, lb) in enumerate(zip(boxes, labels)):
        padded[k, :len(bx)] = bx
        classes[k, :len(lb)] = lb
        valid[k, :len(bx)] = True
    x, y = locs.points[None, :, 0:1], locs.points[None, :, 1:2]           # (1, N, 1)
    x1, y1, x2, y2 = (padded[:, None, :, j] for j in range(4))             # (B, 1, M)
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], -1)              # (B, N, M, 4)
    inside = ltrb.min(-1).values > 0
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    radius = locs.strides[None, :, None] * center_radius
    near = ((x - cx).abs() < radius) & ((y - cy).abs() < radius)
    reach = ltrb.max(-1).values
    in_range = (reach >= locs.ranges[None, :, 0:1]) & (reach <= locs.ranges[None, :, 1:2])
    box_area = (x2 - x1) * (y2 - y1)                                       # (B, 1, M)
    area = box_area.expand(count, n, m).clone()
    area[~(inside & near & in_range & valid[:, None, :])] = math.inf
    orphan = torch.isinf(area).all(1) & valid                              # (B, M)
    if orphan.any():
        finest = locs.strides == locs.strides.min()
        d = (x - cx) ** 2 + (y - cy) ** 2                                  # (B, N, M)
        d[:, ~finest] = math.inf
        img, col = orphan.nonzero(as_tuple=True)
        nearest = d[img, :, col].argmin(1)
        area[img, nearest, col] = box_area[img, 0, col]
    best_area, best = area.min(2)                                          # (B, N)
    cls = torch.gather(classes, 1, best)
    cls[torch.isinf(best_area)] = num_classes
    return cls, torch.gather(padded, 1, best[..., None].expand(count, n, 4))
