"""The region proposal network of faster_rcnn (Ren et al., 2015, on every level as in FPN): per
anchor an objectness logit and deltas; proposals are each image's decoded top anchors of every
level after NMS within the level, the best over the levels kept. Anchors are matched at IoU >= 0.7
(positive) and < 0.3 (background), and 256 per image are sampled for the loss, at most half of
them positive."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..postprocess import batched_nms
from .anchors import UNIT, AnchorTable, decode, dense, match_batch, regression_loss


class RpnTargets:
    """Per image and anchor: 1 object, 0 background, -1 ignored, and the box it regresses; and
    the images' boxes and labels padded to one count (the RoI head samples against them)."""

    def __init__(self, strides: Sequence[int], count: int, scale: float):
        self.anchors = AnchorTable(strides, count, scale)

    def __call__(self, canvas: tuple[int, int], boxes: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
        which, box, gt, gt_labels = match_batch(self.anchors(canvas), boxes, labels, 0.7, 0.3)
        obj = (which >= 0).long()
        obj[which == -2] = -1
        return {"rpn_obj": obj, "rpn_box": box, "gt_boxes": gt, "gt_labels": gt_labels}


class Rpn(nn.Module):
    def __init__(self, channels: int, strides: Sequence[int], count: int, scale: float,
                 proposals: int = 1000, iou_threshold: float = 0.7):
        super().__init__()
        self.strides, self.count, self.scale = list(strides), count, scale
        self.pre_nms, self.post_nms, self.iou_threshold = 2 * proposals, proposals, iou_threshold
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.obj = nn.Conv2d(channels, count, 1)
        self.box = nn.Conv2d(channels, count * 4, 1)
        for conv in (self.conv, self.obj, self.box):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: Sequence[Tensor], anchors: Tensor) -> dict[str, Tensor]:
        hidden = [torch.relu(self.conv(x)) for x in feats]
        obj = torch.cat([dense(self.obj(x), 1) for x in hidden], 1)[..., 0]     # (B, N)
        box = torch.cat([dense(self.box(x), 4) for x in hidden], 1)             # (B, N, 4)
        return {"rpn_obj": obj, "rpn_box": box, "anchors": anchors}

    @torch.no_grad()
    def proposals(self, out: dict[str, Tensor], sizes: Sequence[tuple[int, int]],
                  canvas: tuple[float, float]) -> tuple[Tensor, Tensor]:
        """(R, 4) proposals and the image (R,) of each, as FPN makes them: per image and level the
        `pre_nms` best anchors, decoded and clamped to the canvas, NMS at `iou_threshold` within
        each level, then the best `post_nms` over the levels."""
        obj, deltas = out["rpn_obj"].float(), out["rpn_box"].float()
        tops, levels, start = [], [], 0
        for level, (h, w) in enumerate(sizes):
            n = h * w * self.count
            k = min(self.pre_nms, n)
            tops.append(obj[:, start:start + n].topk(k, dim=1).indices + start)
            levels.append(torch.full((k,), level, dtype=torch.long, device=obj.device))
            start += n
        top, level = torch.cat(tops, 1), torch.cat(levels)                           # (B, n), (n,)
        limit = out["anchors"].new_tensor([canvas[1], canvas[0]]).repeat(2)
        found = decode(out["anchors"][top], torch.gather(deltas, 1, top[..., None].expand(-1, -1, 4)), UNIT)
        found = torch.minimum(found.clamp(min=0), limit)
        boxes, images = [], []
        for i in range(len(found)):
            real = ((found[i, :, 2:] - found[i, :, :2]) > 1e-2).all(1)
            kept = batched_nms(found[i][real], torch.gather(obj[i], 0, top[i])[real], level[real],
                               self.iou_threshold, self.post_nms)
            boxes.append(found[i][real][kept])
            images.append(torch.full((len(kept),), i, dtype=torch.long, device=found.device))
        return torch.cat(boxes), torch.cat(images)

    def loss(self, out: dict[str, Tensor], targets: dict[str, Tensor], box_loss: str,
             per_image: int = 256) -> dict[str, Tensor]:
        obj, deltas = out["rpn_obj"], out["rpn_box"]
        rows, labels = [], []
        for i, target in enumerate(targets["rpn_obj"]):
            pos = (target == 1).nonzero().flatten()
            neg = (target == 0).nonzero().flatten()
            pos = pos[torch.randperm(len(pos), device=pos.device)[:per_image // 2]]
            neg = neg[torch.randperm(len(neg), device=neg.device)[:per_image - len(pos)]]
            rows.append(torch.stack([torch.full_like(pos, i), pos], 1))
            rows.append(torch.stack([torch.full_like(neg, i), neg], 1))
            labels += [torch.ones(len(pos), device=obj.device), torch.zeros(len(neg), device=obj.device)]
        rows, labels = torch.cat(rows), torch.cat(labels)
        sampled = max(len(rows), 1)
        obj_loss = F.binary_cross_entropy_with_logits(obj[rows[:, 0], rows[:, 1]], labels, reduction="sum") / sampled
        pos = rows[labels > 0]
        box = regression_loss(box_loss, out["anchors"][pos[:, 1]], deltas[pos[:, 0], pos[:, 1]],
                              targets["rpn_box"][pos[:, 0], pos[:, 1]], UNIT) / sampled
        return {"rpn_obj": obj_loss, "rpn_box": box}


def canvas_of(feats: Sequence[Tensor], strides: Sequence[int]) -> tuple[float, float]:
    """(H, W) in pixels the finest map covers."""
    h, w = feats[0].shape[-2:]
    return float(h * strides[0]), float(w * strides[0])

