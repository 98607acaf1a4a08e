"""Duplicate removal shared by every head: greedy (hard) NMS and Gaussian Soft-NMS (Bodla et al.,
ICCV 2017), class-wise in one pass (plain torch and NumPy)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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


def soft_nms(boxes: Tensor, scores: Tensor, sigma: float, max_keep: int | None = None,
             min_score: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Gaussian Soft-NMS: repeatedly keep the highest-scoring box and decay every other box's score
    by exp(-IoU^2 / sigma); a box whose score falls below `min_score` is dropped. Returns the kept
    indices in the order kept (highest decayed score first) and their decayed scores. Scores only
    decay, so the first `max_keep` kept are the `max_keep` best at the end: it stops there."""
    x1, y1, x2, y2 = boxes.detach().cpu().double().numpy().T
    current = scores.detach().cpu().double().numpy().copy()
    area = (x2 - x1) * (y2 - y1)
    alive = current >= min_score
    keep: list[int] = []
    kept_scores: list[float] = []
    while alive.any() and (max_keep is None or len(keep) < max_keep):
        i = int(np.flatnonzero(alive)[current[alive].argmax()])
        keep.append(i)
        kept_scores.append(current[i])
        alive[i] = False
        w = np.maximum(np.minimum(x2[i], x2) - np.maximum(x1[i], x1), 0)
        h = np.maximum(np.minimum(y2[i], y2) - np.maximum(y1[i], y1), 0)
        inter = w * h
        iou = inter / np.maximum(area[i] + area - inter, 1e-9)
        current = np.where(alive, current * np.exp(-iou ** 2 / sigma), current)
        alive &= current >= min_score
    index = torch.as_tensor(keep, dtype=torch.long).to(boxes.device)
    return index, torch.as_tensor(kept_scores, dtype=scores.dtype).to(scores.device)


def suppress(boxes: Tensor, scores: Tensor, labels: Tensor, kind: str, iou_threshold: float, sigma: float,
             max_keep: int) -> tuple[Tensor, Tensor]:
    """Class-wise `kind` NMS (hard | soft): the kept indices and their (soft: decayed) scores."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), scores[:0]
    if kind == "hard":
        kept = batched_nms(boxes, scores, labels, iou_threshold, max_keep)
        return kept, scores[kept]
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    return soft_nms(boxes + offset, scores, sigma, max_keep)
