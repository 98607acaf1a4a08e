"""RetinaNet (Lin et al., ICCV 2017; M2Det's head is of this kind): dense and anchor-based, shared
across levels. Per anchor, class logits (sigmoid, focal loss) and deltas to its box (smooth L1
on the deltas, or GIoU on the boxes they make); anchors are matched to boxes by IoU (>= 0.5
positive, < 0.4 background, the best anchors of every box positive)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import focal_loss
from ..postprocess import suppress
from .anchors import UNIT, AnchorTable, decode, dense, grid_anchors, match_batch, regression_loss
from .common import Detections, GridCache, tower


class RetinaTargets:
    """Per image and anchor: a class (num_classes = background, -1 = ignored) and its box."""

    def __init__(self, strides: Sequence[int], num_classes: int, count: int, scale: float,
                 positive: float = 0.5, negative: float = 0.4):
        self.anchors = AnchorTable(strides, count, scale)
        self.num_classes, self.positive, self.negative = num_classes, positive, negative

    def __call__(self, canvas: tuple[int, int], boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        which, box, _, gt_labels = match_batch(self.anchors(canvas), boxes, labels, self.positive, self.negative)
        cls = torch.where(which >= 0, torch.gather(gt_labels, 1, which.clamp(min=0)),
                          torch.full_like(which, self.num_classes))
        cls[which == -2] = -1
        return {"cls": cls, "box": box}


class RetinaHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], depth: int = 2,
                 anchors: int = 9, anchor_scale: float = 4.0, box_loss: str = "smooth_l1", nms: str = "hard",
                 nms_sigma: float = 0.5, prior: float = 0.01):
        super().__init__()
        self.strides, self.num_classes, self.count = list(strides), num_classes, anchors
        self.box_loss, self.nms, self.nms_sigma = box_loss, nms, nms_sigma
        self.cls_tower = tower(channels, depth)
        self.box_tower = tower(channels, depth)
        self.cls = nn.Conv2d(channels, anchors * num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, anchors * 4, 3, padding=1)
        for conv in (self.cls, self.box):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))
        self.grid = GridCache(lambda sizes: grid_anchors(sizes, self.strides, anchors, anchor_scale))

    def forward(self, feats: Sequence[Tensor], targets: Optional[dict] = None) -> dict[str, Tensor]:
        """Over levels (finest first), locations and anchors: class logits `cls` (B, N, K), deltas
        `box` (B, N, 4), and the `anchors` (N, 4)."""
        cls = torch.cat([dense(self.cls(self.cls_tower(x)), self.num_classes) for x in feats], 1)
        box = torch.cat([dense(self.box(self.box_tower(x)), 4) for x in feats], 1)
        anchors = self.grid(feats)
        return {"cls": cls, "box": box, "anchors": anchors}

    def loss(self, out: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        cls, deltas = out["cls"].flatten(0, 1), out["box"].flatten(0, 1)
        anchors = out["anchors"].repeat(out["cls"].shape[0], 1)
        target_cls, target_box = targets["cls"].flatten(), targets["box"].flatten(0, 1)
        valid = target_cls >= 0
        pos = valid & (target_cls < self.num_classes)
        num_pos = max(float(pos.sum()), 1.0)
        onehot = F.one_hot(target_cls[valid], self.num_classes + 1)[:, :self.num_classes].to(cls.dtype)
        cls_loss = focal_loss(cls[valid], onehot) / num_pos
        box_loss = regression_loss(self.box_loss, anchors[pos], deltas[pos], target_box[pos], UNIT) / num_pos
        return {"cls": cls_loss, "box": box_loss, "total": cls_loss + box_loss}

    def detect(self, out: dict[str, Tensor], extents: Tensor, score_threshold: float = 0.05, pre_nms: int = 1000,
               iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
        results = []
        for i, (c, d) in enumerate(zip(out["cls"], out["box"])):
            scores = torch.sigmoid(c).flatten()
            idx = (scores > score_threshold).nonzero().flatten()
            if len(idx) > pre_nms:
                idx = idx[scores[idx].topk(pre_nms).indices]
            anchor, label = idx // self.num_classes, idx % self.num_classes
            boxes = decode(out["anchors"][anchor], d[anchor], UNIT)
            boxes = torch.minimum(boxes.clamp(min=0), extents[i].repeat(2))
            kept, kept_scores = suppress(boxes, scores[idx], label, self.nms, iou_threshold, self.nms_sigma,
                                         max_detections)
            results.append((boxes[kept], kept_scores, label[kept]))
        return results

