"""From head outputs to detections: scores, top-k, boxes, class-wise NMS (plain torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .losses import boxes_from_distances


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS; returns kept indices, highest score first."""
    order = scores.argsort(descending=True)
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i]
    return order[torch.as_tensor(keep, dtype=torch.long)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-wise NMS in one pass: boxes of different classes are offset so they never overlap."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    return nms(boxes + offset, scores, iou_threshold)


def decode(cls_logits: Tensor, box_dist: Tensor, ctr_logits: Tensor, points: Tensor,
           score_threshold: float = 0.05, pre_nms: int = 1000, iou_threshold: float = 0.6,
           max_detections: int = 100, image_size: int | None = None) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per image: (boxes xyxy, scores, labels)."""
    results = []
    num_classes = cls_logits.shape[-1]
    for c, b, t in zip(cls_logits, box_dist, ctr_logits):
        scores = torch.sqrt(torch.sigmoid(c) * torch.sigmoid(t)[:, None]).flatten()
        keep = scores > score_threshold
        idx = keep.nonzero().flatten()
        if len(idx) > pre_nms:
            idx = idx[scores[idx].topk(pre_nms).indices]
        loc, label = idx // num_classes, idx % num_classes
        boxes = boxes_from_distances(points[loc], b[loc])
        if image_size is not None:
            boxes = boxes.clamp(0, image_size)
        kept = batched_nms(boxes, scores[idx], label, iou_threshold)[:max_detections]
        results.append((boxes[kept], scores[idx][kept], label[kept]))
    return results
