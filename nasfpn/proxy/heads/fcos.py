"""FCOS (the default head): anchor-free and dense, shared across levels (the CornerNet argument: no
anchor boxes and their hyper-parameters). Per location, class logits, the distances to the box's
sides (l, t, r, b) and a centerness logit; targets by FCOS's assignment (targets.py)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import boxes_from_distances, centerness, focal_loss, giou_loss
from ..postprocess import suppress
from ..targets import assign_batch, grid_points, level_ranges, locations, strides_for
from .common import Detections, GridCache, tower


class FcosTargets:
    """Per image and location: a class (num_classes = background) and the box it regresses. Runs
    in the loader's workers; the locations of each canvas are laid out once."""

    def __init__(self, levels: Sequence[int], num_classes: int):
        self.strides = strides_for(levels)
        self.ranges = level_ranges(self.strides)
        self.num_classes = num_classes
        self.table: dict = {}

    def locations(self, canvas: tuple[int, int]):
        if canvas not in self.table:
            self.table[canvas] = locations(canvas, self.strides, self.ranges)
        return self.table[canvas]

    def __call__(self, canvas: tuple[int, int], boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        cls, box = assign_batch(self.locations(canvas), boxes, labels, self.num_classes)
        return {"cls": cls, "box": box}


class FcosHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], depth: int = 2,
                 prior: float = 0.01, nms: str = "hard", nms_sigma: float = 0.5):
        super().__init__()
        self.strides = list(strides)
        self.nms, self.nms_sigma = nms, nms_sigma
        self.cls_tower = tower(channels, depth)
        self.box_tower = tower(channels, depth)
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.ctr = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(strides)))
        for conv in (self.cls, self.box, self.ctr):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))
        self.grid = GridCache(lambda sizes: grid_points(sizes, self.strides))

    def forward(self, feats: Sequence[Tensor], targets: Optional[dict] = None) -> dict[str, Tensor]:
        """Flattened over levels (finest first) and locations (row-major): class logits `cls`
        (B, N, K), box side distances in pixels `box` (B, N, 4), centerness logits `ctr` (B, N),
        and the locations' centres `points` (N, 2)."""
        cls_out, box_out, ctr_out = [], [], []
        for i, x in enumerate(feats):
            c = self.cls_tower(x)
            b = self.box_tower(x)
            cls_out.append(self.cls(c).flatten(2).transpose(1, 2))
            dist = F.relu(self.box(b) * self.scales[i]) * self.strides[i]
            box_out.append(dist.flatten(2).transpose(1, 2))
            ctr_out.append(self.ctr(b).flatten(1))
        points = self.grid(feats)
        return {"cls": torch.cat(cls_out, 1), "box": torch.cat(box_out, 1), "ctr": torch.cat(ctr_out, 1),
                "points": points}

    def loss(self, out: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        b = out["cls"].shape[0]
        return detection_loss(out["cls"].flatten(0, 1), out["box"].flatten(0, 1), out["ctr"].flatten(),
                              out["points"].repeat(b, 1), targets["cls"].flatten(), targets["box"].flatten(0, 1))

    def detect(self, out: dict[str, Tensor], extents: Tensor) -> Detections:
        return decode(out["cls"], out["box"], out["ctr"], out["points"], extents=extents, nms=self.nms,
                      nms_sigma=self.nms_sigma)


def detection_loss(cls_logits: Tensor, box_dist: Tensor, ctr_logits: Tensor, points: Tensor,
                   target_cls: Tensor, target_box: Tensor) -> dict[str, Tensor]:
    """All inputs flattened over (batch, locations): focal loss for the classes, GIoU for the boxes
    (weighted by centerness), BCE for centerness. Returns each loss and their sum, `total`."""
    num_classes = cls_logits.shape[-1]
    pos = target_cls < num_classes
    num_pos = max(float(pos.sum()), 1.0)
    onehot = F.one_hot(target_cls, num_classes + 1)[:, :num_classes].to(cls_logits.dtype)
    cls = focal_loss(cls_logits, onehot) / num_pos
    if pos.any():
        pts = points[pos]
        ctr_target = centerness(pts, target_box[pos])
        pred_boxes = boxes_from_distances(pts, box_dist[pos])
        box = (giou_loss(pred_boxes, target_box[pos]) * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
        ctr = F.binary_cross_entropy_with_logits(ctr_logits[pos], ctr_target, reduction="sum") / num_pos
    else:
        box = ctr = box_dist.sum() * 0 + ctr_logits.sum() * 0
    return {"cls": cls, "box": box, "ctr": ctr, "total": cls + box + ctr}


def decode(cls_logits: Tensor, box_dist: Tensor, ctr_logits: Tensor, points: Tensor,
           score_threshold: float = 0.05, pre_nms: int = 1000, iou_threshold: float = 0.6,
           max_detections: int = 100, extents: Tensor | None = None, nms: str = "hard",
           nms_sigma: float = 0.5) -> Detections:
    """Per image: (boxes xyxy, scores, labels), clamped to the image's (w, h) in `extents`."""
    results = []
    num_classes = cls_logits.shape[-1]
    for i, (c, b, t) in enumerate(zip(cls_logits, box_dist, ctr_logits)):
        scores = torch.sqrt(torch.sigmoid(c) * torch.sigmoid(t)[:, None]).flatten()
        keep = scores > score_threshold
        idx = keep.nonzero().flatten()
        if len(idx) > pre_nms:
            idx = idx[scores[idx].topk(pre_nms).indices]
        loc, label = idx // num_classes, idx % num_classes
        boxes = boxes_from_distances(points[loc], b[loc])
        if extents is not None:
            boxes = torch.minimum(boxes.clamp(min=0), extents[i].repeat(2))
        kept, kept_scores = suppress(boxes, scores[idx], label, nms, iou_threshold, nms_sigma, max_detections)
        results.append((boxes[kept], kept_scores, label[kept]))
    return results
