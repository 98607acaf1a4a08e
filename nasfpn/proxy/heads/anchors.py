"""Anchor boxes and what anchor-based heads (retina, the RPN of faster_rcnn) do with them: lay them
out over the pyramid, match them to boxes by IoU, and encode boxes as deltas against them."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..losses import giou_loss, smooth_l1
from ..targets import grid_points

RATIOS = (0.5, 1.0, 2.0)                    # height / width
DELTA_CLAMP = math.log(1000.0 / 16)         # the largest log-scale a delta may apply (as Detectron)
UNIT = (1.0, 1.0, 1.0, 1.0)                 # delta weights of the dense heads (retina, the RPN)


def anchor_shapes(count: int, scale: float) -> list[tuple[float, float]]:
    """(w, h) in strides of the `count` anchors of a location: 1 square, or 3 ratios x 1, 2 or 3
    octave scales 2^(k/S), the smallest of side `scale` strides (RetinaNet: 9 = 3 x 3, side 4)."""
    ratios = (1.0,) if count == 1 else RATIOS
    octaves = count // len(ratios)
    shapes = []
    for k in range(octaves):
        side = scale * 2 ** (k / octaves)
        for r in ratios:
            shapes.append((side / math.sqrt(r), side * math.sqrt(r)))
    return shapes


def grid_anchors(sizes: Sequence[tuple[int, int]], strides: Sequence[int], count: int, scale: float) -> Tensor:
    """(N x count, 4) xyxy anchors of maps of these (H, W), levels finest first, then locations
    row-major, then the `count` shapes of each location (the order the heads' outputs flatten in)."""
    out = []
    shapes = torch.tensor(anchor_shapes(count, scale))                    # (A, 2) in strides
    for size, s in zip(sizes, strides):
        centres = grid_points([size], [s])                                # (n, 2)
        half = shapes * s / 2
        out.append(torch.cat([centres[:, None] - half, centres[:, None] + half], -1).reshape(-1, 4))
    return torch.cat(out)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(n, m) IoU of xyxy boxes."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def match(anchors: Tensor, boxes: Tensor, positive: float, negative: float) -> Tensor:
    """Per anchor, the index of its box (-1 background, -2 ignored): a box with IoU >= `positive`,
    background below `negative`, ignored between; and the anchors a box overlaps most are
    positive too, each for the box it overlaps most (else a box unlike every anchor would never
    be learnt: Faster R-CNN's low-quality matches)."""
    out = torch.full((len(anchors),), -1, dtype=torch.long)
    if len(boxes) == 0:
        return out
    iou = box_iou(anchors, boxes)                                        # (A, M)
    best, which = iou.max(1)
    out[best >= negative] = -2
    out[best >= positive] = which[best >= positive]
    top = iou.max(0).values                                              # (M,)
    hit = ((iou == top[None]) & (top[None] > 0)).any(1)                  # some box's best anchors,
    out[hit] = which[hit]                                                # each to its own best box
    return out


def encode(anchors: Tensor, boxes: Tensor, weights: Sequence[float]) -> Tensor:
    """Deltas (dx, dy, dw, dh) that take each anchor to its box, scaled by `weights`."""
    wa, ha = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    xa, ya = anchors[:, 0] + wa / 2, anchors[:, 1] + ha / 2
    wb, hb = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3), (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    xb, yb = boxes[:, 0] + wb / 2, boxes[:, 1] + hb / 2
    wx, wy, ww, wh = weights
    return torch.stack([wx * (xb - xa) / wa, wy * (yb - ya) / ha, ww * torch.log(wb / wa), wh * torch.log(hb / ha)], -1)


def decode(anchors: Tensor, deltas: Tensor, weights: Sequence[float]) -> Tensor:
    """The boxes that `deltas` (..., 4) make of `anchors` (..., 4): the inverse of encode."""
    wa, ha = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    xa, ya = anchors[..., 0] + wa / 2, anchors[..., 1] + ha / 2
    wx, wy, ww, wh = weights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw, dh = (deltas[..., 2] / ww).clamp(max=DELTA_CLAMP), (deltas[..., 3] / wh).clamp(max=DELTA_CLAMP)
    x, y = xa + dx * wa, ya + dy * ha
    w, h = wa * torch.exp(dw), ha * torch.exp(dh)
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)


def padded(boxes: Sequence[Tensor], labels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """The images' boxes (B, M, 4) and labels (B, M) padded to one count, padding labelled -1."""
    m = max(1, max(len(b) for b in boxes))
    out_boxes = torch.zeros(len(boxes), m, 4)
    out_labels = torch.full((len(boxes), m), -1, dtype=torch.long)
    for k, (b, lb) in enumerate(zip(boxes, labels)):
        out_boxes[k, :len(b)] = b.float()
        out_labels[k, :len(lb)] = lb.long()
    return out_boxes, out_labels


def match_batch(anchors: Tensor, boxes: Sequence[Tensor], labels: Sequence[Tensor], positive: float,
                negative: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`match` for every image of a batch: the index of each anchor's box (B, A), the box each
    anchor regresses (B, A, 4; zeros where none), and the images' boxes (B, M, 4) and labels
    (B, M) padded to one count (`padded`)."""
    gt, gt_labels = padded(boxes, labels)
    which = torch.stack([match(anchors, gt[k, :len(b)], positive, negative) for k, b in enumerate(boxes)])
    matched = torch.gather(gt, 1, which.clamp(min=0)[..., None].expand(-1, -1, 4)) * (which >= 0)[..., None]
    return which, matched, gt, gt_labels


class AnchorTable:
    """The anchors of each canvas met so far (targets in the loader's workers)."""

    def __init__(self, strides: Sequence[int], count: int, scale: float):
        self.strides, self.count, self.scale = list(strides), count, scale
        self.table: dict = {}

    def __call__(self, canvas: tuple[int, int]) -> Tensor:
        if canvas not in self.table:
            sizes = [(math.ceil(canvas[0] / s), math.ceil(canvas[1] / s)) for s in self.strides]
            self.table[canvas] = grid_anchors(sizes, self.strides, self.count, self.scale)
        return self.table[canvas]


def dense(x: Tensor, per_anchor: int) -> Tensor:
    """(B, A x per_anchor, H, W) -> (B, H x W x A, per_anchor): locations row-major, then anchors."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_anchor)


def regression_loss(kind: str, anchors: Tensor, deltas: Tensor, boxes: Tensor, weights) -> Tensor:
    """Summed over the rows: smooth L1 of the deltas against the deltas that reach `boxes`, or
    1 - GIoU of the boxes the deltas make."""
    if len(anchors) == 0:
        return deltas.sum() * 0
    if kind == "giou":
        return giou_loss(decode(anchors, deltas, weights), boxes).sum()
    return smooth_l1(deltas, encode(anchors, boxes, weights)).sum()
