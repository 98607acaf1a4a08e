"""From head outputs to detections: scores, top-k, boxes, class-wise NMS (plain torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .losses import boxes_from_distances


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None) -> Tensor:
    """Greedy NMS; returns kept indices, highest score first, at most `max_keep` of them.

    Only the IoUs of each kept box with the boxes after it are computed (in numpy): with hundreds
    of candidates per image, an all-pairs IoU matrix cost most of the evaluation time."""
    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = boxes[order].detach().cpu().numpy().T
    area = (x2 - x1) * (y2 - y1)
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) == max_keep:
            break
        rest = slice(i + 1, None)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        iou = inter / np.maximum(area[i] + area[rest] - inter, np.float32(1e-9))
        alive[rest] &= ~(iou > iou_threshold)
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float,
                max_keep: int | None = None) -> Tensor:
    """Class-wise NMS in one pass: boxes of different classes are offset so they never overlap."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    return nms(boxes + offset, scores, iou_threshold, max_keep)


def decode(cls_logits: Tensor, box_dist: Tensor, ctr_logits: Tensor, points: Tensor,
           score_threshold: float = 0.05, pre_nms: int = 1000, iou_threshold: float = 0.6,
           max_detections: int = 100, extents: Tensor | None = None) -> list[tuple[Tensor, Tensor, Tensor]]:
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
        kept = batched_nms(boxes, scores[idx], label, iou_threshold, max_detections)
        results.append((boxes[kept], scores[idx][kept], label[kept]))
    return results
