"""Faster R-CNN with an FPN (Ren et al., 2015; Lin et al., 2017): the RPN on every level proposes
boxes; each RoI's features are pooled from the pyramid by the budget's `roi_levels` (roi.py) and
go through a 2-fc box head to K + 1 class scores (softmax) and class-specific deltas. While it
trains, 64 RoIs per image are sampled from the proposals and the image's boxes, a quarter of them
positive (IoU >= 0.5)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..postprocess import suppress
from ..targets import strides_for
from .anchors import box_iou, decode, grid_anchors, regression_loss
from .common import Detections, GridCache, sizes_of
from .roi import RoiFeatures
from .rpn import Rpn, canvas_of

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # deltas of the box head, as Detectron scales them
ROIS_PER_IMAGE, POSITIVE_FRACTION, POSITIVE_IOU = 64, 0.25, 0.5


class FasterRcnnHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, levels: Sequence[int],
                 anchors: int = 9, anchor_scale: float = 4.0, box_loss: str = "smooth_l1", roi_levels: str = "fpn",
                 roi_canonical: float = 224.0, proposals: int = 1000, nms: str = "hard", nms_sigma: float = 0.5,
                 hidden: int = 256):
        super().__init__()
        self.strides, self.num_classes = strides_for(levels), num_classes
        self.box_loss, self.nms, self.nms_sigma = box_loss, nms, nms_sigma
        self.rpn = Rpn(channels, self.strides, anchors, anchor_scale, proposals)
        self.features = RoiFeatures(roi_levels, channels, levels, hidden, canonical=roi_canonical)
        self.cls = nn.Linear(hidden, num_classes + 1)
        self.box = nn.Linear(hidden, num_classes * 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)
        self.grid = GridCache(lambda sizes: grid_anchors(sizes, self.strides, anchors, anchor_scale))

    def forward(self, feats: Sequence[Tensor], targets: Optional[dict] = None) -> dict[str, Tensor]:
        """The RPN's outputs, the RoIs `rois` (R, 4) of images `roi_image` (R,), their class
        logits `roi_cls` (R, K + 1) and deltas `roi_box` (R, K, 4); while training, the sampled
        RoIs' `roi_labels` (K: background) and `roi_targets` (the boxes they regress)."""
        anchors = self.grid(feats)
        out = self.rpn(feats, anchors)
        rois, images = self.rpn.proposals(out, sizes_of(feats), canvas_of(feats, self.strides))
        if targets is not None:
            rois, images, labels, boxes = sample_rois(rois, images, targets["gt_boxes"], targets["gt_labels"],
                                                      self.num_classes)
            out.update(roi_labels=labels, roi_targets=boxes)
        hidden = self.features(feats, torch.cat([images[:, None].to(rois.dtype), rois], 1))
        out.update(rois=rois, roi_image=images, roi_cls=self.cls(hidden),
                   roi_box=self.box(hidden).reshape(len(rois), self.num_classes, 4))
        return out

    def loss(self, out: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        losses = self.rpn.loss(out, targets, self.box_loss)
        labels = out["roi_labels"]
        cls = F.cross_entropy(out["roi_cls"], labels) if len(labels) else out["roi_cls"].sum() * 0
        pos = (labels < self.num_classes).nonzero().flatten()
        deltas = out["roi_box"][pos, labels[pos]]
        box = regression_loss(self.box_loss, out["rois"][pos], deltas, out["roi_targets"][pos],
                              BOX_WEIGHTS) / max(len(labels), 1)
        losses.update(roi_cls=cls, roi_box=box)
        losses["total"] = sum(losses.values())
        return losses

    def detect(self, out: dict[str, Tensor], extents: Tensor, score_threshold: float = 0.05, pre_nms: int = 1000,
               iou_threshold: float = 0.5, max_detections: int = 100) -> Detections:
        probs = torch.softmax(out["roi_cls"], -1)[:, :self.num_classes]
        boxes = decode(out["rois"][:, None].expand(-1, self.num_classes, 4), out["roi_box"], BOX_WEIGHTS)
        results = []
        for i in range(len(extents)):
            mine = out["roi_image"] == i
            scores, found = probs[mine].flatten(), boxes[mine].reshape(-1, 4)
            idx = (scores > score_threshold).nonzero().flatten()
            if len(idx) > pre_nms:
                idx = idx[scores[idx].topk(pre_nms).indices]
            label = idx % self.num_classes
            found = torch.minimum(found[idx].clamp(min=0), extents[i].repeat(2))
            kept, kept_scores = suppress(found, scores[idx], label, self.nms, iou_threshold, self.nms_sigma,
                                         max_detections)
            results.append((found[kept], kept_scores, label[kept]))
        return results


@torch.no_grad()
def sample_rois(rois: Tensor, images: Tensor, gt_boxes: Tensor, gt_labels: Tensor, num_classes: int):
    """Per image, up to ROIS_PER_IMAGE RoIs from its proposals and its boxes, at most a quarter
    positive (IoU >= 0.5 with a box: labelled as that box), the rest background; returns the RoIs,
    their images, labels (num_classes: background) and the boxes they regress."""
    out_rois, out_images, out_labels, out_boxes = [], [], [], []
    for i in range(len(gt_boxes)):
        real = gt_labels[i] >= 0
        gt, lab = gt_boxes[i][real], gt_labels[i][real]
        candidates = torch.cat([rois[images == i], gt])
        if len(gt):
            best, which = box_iou(candidates, gt).max(1)
        else:
            best = candidates.new_zeros(len(candidates))
            which = torch.zeros(len(candidates), dtype=torch.long, device=candidates.device)
        pos = (best >= POSITIVE_IOU).nonzero().flatten()
        neg = (best < POSITIVE_IOU).nonzero().flatten()
        pos = pos[torch.randperm(len(pos), device=pos.device)[:int(ROIS_PER_IMAGE * POSITIVE_FRACTION)]]
        neg = neg[torch.randperm(len(neg), device=neg.device)[:ROIS_PER_IMAGE - len(pos)]]
        keep = torch.cat([pos, neg])
        labels = torch.full((len(keep),), num_classes, dtype=torch.long, device=candidates.device)
        labels[:len(pos)] = lab[which[pos]] if len(gt) else labels[:len(pos)]
        out_rois.append(candidates[keep])
        out_images.append(torch.full((len(keep),), i, dtype=torch.long, device=candidates.device))
        out_labels.append(labels)
        out_boxes.append(gt[which[keep]] if len(gt) else candidates[keep])
    return torch.cat(out_rois), torch.cat(out_images), torch.cat(out_labels), torch.cat(out_boxes)

