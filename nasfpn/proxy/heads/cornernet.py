"""CornerNet (Law & Deng, ECCV 2018): no anchors; an object is a pair of corners. Two branches
(top-left, bottom-right), each with corner pooling, predict per class a corner heatmap
(penalty-reduced focal loss), a 1-d associative embedding (pull / push) and a sub-cell offset;
decoding pairs corners of one class whose embeddings agree.

It predicts on the finest output level only (P3 of P3..P7), as CornerNet predicts on one
high-resolution map: corners are paired within one embedding space, and pairs across levels would
need a rule CornerNet does not have. The neck's job under this head is to bring the coarse levels'
context into its finest output, which is what top-down paths do; coarser outputs get no gradient.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.post import group_count
from ..losses import smooth_l1
from ..postprocess import suppress
from .common import Detections, tower

MIN_OVERLAP = 0.7      # a corner within the radius keeps IoU >= this with the object
EMBEDDING_GAP = 0.5    # corners pair when their embeddings differ by less
PULL, PUSH = 0.1, 0.1  # weights of the embedding losses (CornerNet's)


def corner_pool(x: Tensor, dim: int, towards_end: bool) -> Tensor:
    """Each position the max of `x` from it to the end (`towards_end`) or to the start along `dim`."""
    if towards_end:
        return x.flip(dim).cummax(dim).values.flip(dim)
    return x.cummax(dim).values


def top_left_pool(looks_down: Tensor, looks_right: Tensor) -> Tensor:
    """A top-left corner sees its object below it and to its right."""
    return corner_pool(looks_down, 2, True) + corner_pool(looks_right, 3, True)


def bottom_right_pool(looks_up: Tensor, looks_left: Tensor) -> Tensor:
    return corner_pool(looks_up, 2, False) + corner_pool(looks_left, 3, False)


def _conv_norm(channels_in: int, channels: int, k: int, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(channels_in, channels, k, padding=k // 2, bias=False),
                               nn.GroupNorm(group_count(channels, max(1, channels // 8)), channels)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class CornerBranch(nn.Module):
    """Corner pooling module (two 3x3 convs, the pooling, a 3x3 conv added to a 1x1 skip), a tower,
    then the heatmap, embedding and offset predictions of one corner."""

    def __init__(self, channels: int, num_classes: int, depth: int, top_left: bool, prior: float = 0.1):
        super().__init__()
        self.top_left = top_left
        self.a, self.b = _conv_norm(channels, channels, 3), _conv_norm(channels, channels, 3)
        self.merge, self.skip = _conv_norm(channels, channels, 3, relu=False), _conv_norm(channels, channels, 1, False)
        self.tower = tower(channels, depth)
        self.heat = nn.Conv2d(channels, num_classes, 1)
        self.embed = nn.Conv2d(channels, 1, 1)
        self.offset = nn.Conv2d(channels, 2, 1)
        nn.init.constant_(self.heat.bias, -math.log((1 - prior) / prior))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pool = top_left_pool if self.top_left else bottom_right_pool
        y = self.tower(torch.relu(self.merge(pool(self.a(x), self.b(x))) + self.skip(x)))
        return self.heat(y), self.embed(y)[:, 0], self.offset(y)


def corner_radius(w: float, h: float, overlap: float = MIN_OVERLAP) -> float:
    """The largest r such that moving the corners by r keeps IoU >= overlap with the box, in each of
    the three worst cases: both corners inward, both outward, both the same way."""
    s, p, t = w + h, w * h, overlap
    inward = (2 * s - math.sqrt(max(4 * s * s - 16 * (1 - t) * p, 0.0))) / 8
    outward = (-2 * t * s + math.sqrt(4 * t * t * s * s + 16 * t * (1 - t) * p)) / (8 * t)
    shifted = (s - math.sqrt(max(s * s - 4 * p * (1 - t) / (1 + t), 0.0))) / 2
    return max(0.0, min(inward, outward, shifted))


class CornerTargets:
    """On the finest level's map: per class the two corner heatmaps (1 at a corner, a Gaussian of
    the corner's radius around it), and per object the corners' cells, offsets and a mask."""

    def __init__(self, stride: int, num_classes: int):
        self.stride, self.num_classes = stride, num_classes

    def __call__(self, canvas: tuple[int, int], boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        h, w = math.ceil(canvas[0] / self.stride), math.ceil(canvas[1] / self.stride)
        n, m, k = len(boxes), max(1, max(len(b) for b in boxes)), self.num_classes
        image = torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, b in enumerate(boxes)])
        slot = torch.cat([torch.arange(len(b)) for b in boxes])
        label = torch.cat([lb.long() for lb in labels])
        scaled = torch.cat([b.float() for b in boxes]).reshape(-1, 4) / self.stride       # (T, 4) in cells
        radius = torch.tensor([float(int(corner_radius(float(x2 - x1), float(y2 - y1))))
                               for x1, y1, x2, y2 in scaled.tolist()])
        sigma = (2 * radius + 1) / 6
        mask = torch.zeros(n, m, dtype=torch.bool)
        mask[image, slot] = True
        out = {"mask": mask}
        ys, xs = torch.arange(h, dtype=torch.float32)[None, :, None], torch.arange(w, dtype=torch.float32)[None, None]
        for name, corner in (("tl", scaled[:, :2]), ("br", scaled[:, 2:])):
            ix, iy = corner[:, 0].long().clamp(max=w - 1), corner[:, 1].long().clamp(max=h - 1)
            dx, dy = xs - ix[:, None, None], ys - iy[:, None, None]                 # (T, H, W)
            r = radius[:, None, None]
            near = (dx.abs() <= r) & (dy.abs() <= r)
            bumps = (torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma[:, None, None] ** 2)) * near).flatten(1)
            where = (image * k + label)[:, None].expand_as(bumps)
            heat = torch.zeros(n * k, h * w).scatter_reduce_(0, where, bumps, "amax").reshape(n, k, h, w)
            heat[image, label, iy, ix] = 1.0
            cells, offsets = torch.zeros(n, m, dtype=torch.long), torch.zeros(n, m, 2)
            cells[image, slot] = iy * w + ix
            offsets[image, slot] = corner - torch.stack([ix, iy], 1).float()
            out.update({f"{name}_heat": heat, f"{name}_cell": cells, f"{name}_offset": offsets})
        return out


class CornerNetHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], depth: int = 2,
                 nms: str = "hard", nms_sigma: float = 0.5):
        super().__init__()
        self.stride, self.num_classes, self.nms, self.nms_sigma = strides[0], num_classes, nms, nms_sigma
        self.tl = CornerBranch(channels, num_classes, depth, top_left=True)
        self.br = CornerBranch(channels, num_classes, depth, top_left=False)

    def forward(self, feats: Sequence[Tensor], targets: Optional[dict] = None) -> dict[str, Tensor]:
        """On the finest map (B, ., H, W): heatmap logits `*_heat` (B, K, H, W), embeddings
        `*_embed` (B, H, W) and offsets `*_offset` (B, 2, H, W) of both corners."""
        tl, br = self.tl(feats[0]), self.br(feats[0])
        return {"tl_heat": tl[0], "tl_embed": tl[1], "tl_offset": tl[2],
                "br_heat": br[0], "br_embed": br[1], "br_offset": br[2]}

    def loss(self, out: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = targets["mask"]
        objects = max(float(mask.sum()), 1.0)
        heat = (corner_focal(out["tl_heat"], targets["tl_heat"]) + corner_focal(out["br_heat"], targets["br_heat"]))
        heat = heat / objects
        tl_e, br_e = (_at(out[f"{c}_embed"][:, None], targets[f"{c}_cell"])[..., 0] for c in ("tl", "br"))
        pull, push = embedding_losses(tl_e, br_e, mask)
        offset = sum(smooth_l1(_at(out[f"{c}_offset"], targets[f"{c}_cell"])[mask], targets[f"{c}_offset"][mask],
                               beta=1.0).sum() for c in ("tl", "br")) / objects
        return {"heat": heat, "pull": PULL * pull, "push": PUSH * push, "offset": offset,
                "total": heat + PULL * pull + PUSH * push + offset}

    def detect(self, out: dict[str, Tensor], extents: Tensor, top: int = 100, score_threshold: float = 0.05,
               iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
        results = []
        width = out["tl_heat"].shape[-1]
        for i in range(len(extents)):
            corners = {}
            for c in ("tl", "br"):
                heat = torch.sigmoid(out[f"{c}_heat"][i])
                peaks = heat * (F.max_pool2d(heat[None], 3, stride=1, padding=1)[0] == heat)
                scores, idx = peaks.flatten().topk(min(top, peaks.numel()))
                label, cell = idx // peaks[0].numel(), idx % peaks[0].numel()
                y, x = (cell // width).float(), (cell % width).float()
                off = out[f"{c}_offset"][i].flatten(1)[:, cell]
                corners[c] = (scores, label, (x + off[0]) * self.stride, (y + off[1]) * self.stride,
                              out[f"{c}_embed"][i].flatten()[cell])
            (s1, l1, x1, y1, e1), (s2, l2, x2, y2, e2) = corners["tl"], corners["br"]
            ok = ((l1[:, None] == l2[None]) & (x1[:, None] < x2[None]) & (y1[:, None] < y2[None])
                  & ((e1[:, None] - e2[None]).abs() < EMBEDDING_GAP)
                  & (s1[:, None] > score_threshold) & (s2[None] > score_threshold))  # both corners are found
            score = torch.where(ok, (s1[:, None] + s2[None]) / 2, torch.full_like(ok, -1.0, dtype=s1.dtype))
            a, b = (score > score_threshold).nonzero(as_tuple=True)
            boxes = torch.stack([x1[a], y1[a], x2[b], y2[b]], 1)
            boxes = torch.minimum(boxes.clamp(min=0), extents[i].repeat(2))
            kept, kept_scores = suppress(boxes, score[a, b], l1[a], self.nms, iou_threshold, self.nms_sigma,
                                         max_detections)
            results.append((boxes[kept], kept_scores, l1[a][kept]))
        return results


def _at(maps: Tensor, cells: Tensor) -> Tensor:
    """(B, C, H, W) read at flat cells (B, M) -> (B, M, C)."""
    flat = maps.flatten(2)
    return torch.gather(flat, 2, cells[:, None].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def corner_focal(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CornerNet's penalty-reduced focal loss, summed: full weight at the corners (target 1),
    negatives near a corner weighted down by (1 - target)^beta."""
    p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    pos = target == 1
    pos_loss = -(1 - p) ** alpha * torch.log(p)
    neg_loss = -(1 - target) ** beta * p ** alpha * torch.log(1 - p)
    return torch.where(pos, pos_loss, neg_loss).sum()


def embedding_losses(tl: Tensor, br: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Pull each object's two embeddings to their mean; push the means of an image's objects at
    least 1 apart; each averaged over the objects (pairs) of an image, then over the images."""
    pulls, pushes = [], []
    for t, b, m in zip(tl, br, mask):
        t, b = t[m], b[m]
        if len(t) == 0:
            continue
        mean = (t + b) / 2
        pulls.append((((t - mean) ** 2 + (b - mean) ** 2)).mean())
        if len(t) > 1:
            gap = F.relu(1 - (mean[:, None] - mean[None]).abs())
            pushes.append((gap.sum() - gap.diagonal().sum()) / (len(t) * (len(t) - 1)))
    zero = tl.sum() * 0
    return (torch.stack(pulls).mean() if pulls else zero), (torch.stack(pushes).mean() if pushes else zero)
