"""The losses and box arithmetic the heads share: sigmoid focal loss, GIoU, smooth L1, centerness.
A head sums its losses and they are back-propagated once (tests/test_loss_sum.py shows that equals
separate backwards)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma
    return (weight * ce).sum()


def boxes_from_distances(points: Tensor, ltrb: Tensor) -> Tensor:
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], -1)


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-pair 1 - GIoU of xyxy boxes."""
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_p = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(1)
    area_t = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(1)
    union = area_p + area_t - inter + eps
    hull = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).clamp(min=0).prod(1)
    return 1 - (inter / union - (hull - union) / (hull + eps))


def centerness(points: Tensor, boxes: Tensor) -> Tensor:
    l, t = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    r, b = boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]
    lr = torch.stack([l, r], 1).clamp(min=1e-3)
    tb = torch.stack([t, b], 1).clamp(min=1e-3)
    return torch.sqrt((lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values))


def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0 / 9) -> Tensor:
    """Per-element smooth L1 (Huber with a quadratic zone of half-width `beta`)."""
    diff = (pred - target).abs()
    return torch.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta)
