"""The detection heads a neck is scored under (the budget's `head`), one module each and one entry
in HEADS. A head is an nn.Module with

    forward(feats, targets=None) -> dict of tensors   the pyramid's predictions (under autocast);
                                                      a two-stage head samples its RoIs from
                                                      `targets` while it trains
    loss(out, targets) -> dict of fp32 losses and their sum, `total` (the one backward)
    detect(out, extents) -> per image (boxes xyxy, scores, labels), clamped to each image's (w, h)

and a target maker, run in the loader's workers on each training batch:
`(canvas, boxes, labels) -> dict of tensors` (what depends on the boxes and the canvas only, not
on the network)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from torch import nn

from ...dsl.budget import Budget
from ..targets import strides_for
from .cornernet import CornerNetHead, CornerTargets
from .fcos import FcosHead, FcosTargets
from .rcnn import FasterRcnnHead
from .retina import RetinaHead, RetinaTargets
from .rpn import RpnTargets


@dataclass(frozen=True)
class HeadKind:
    build: Callable[[Budget, int, int, Sequence[int], int], nn.Module]  # budget, width, classes, levels, depth
    targets: Callable[[Budget, Sequence[int], int], Callable]           # budget, levels, classes


def _fcos(budget: Budget, width: int, num_classes: int, levels: Sequence[int], depth: int) -> nn.Module:
    return FcosHead(width, num_classes, strides_for(levels), depth=depth, nms=budget.nms, nms_sigma=budget.nms_sigma)


def _retina(budget: Budget, width: int, num_classes: int, levels: Sequence[int], depth: int) -> nn.Module:
    return RetinaHead(width, num_classes, strides_for(levels), depth=depth, anchors=budget.anchors,
                      anchor_scale=budget.anchor_scale, box_loss=budget.box_loss, nms=budget.nms,
                      nms_sigma=budget.nms_sigma)


def _faster_rcnn(budget: Budget, width: int, num_classes: int, levels: Sequence[int], depth: int) -> nn.Module:
    return FasterRcnnHead(width, num_classes, levels, anchors=budget.anchors,
                          anchor_scale=budget.anchor_scale, box_loss=budget.box_loss, roi_levels=budget.roi_levels,
                          roi_canonical=budget.roi_canonical, proposals=budget.proposals, nms=budget.nms,
                          nms_sigma=budget.nms_sigma)


HEADS: dict[str, HeadKind] = {
    "fcos": HeadKind(_fcos, lambda budget, levels, num_classes: FcosTargets(levels, num_classes)),
    "retina": HeadKind(_retina, lambda budget, levels, num_classes: RetinaTargets(
        strides_for(levels), num_classes, budget.anchors, budget.anchor_scale)),
    "faster_rcnn": HeadKind(_faster_rcnn, lambda budget, levels, num_classes: RpnTargets(
        strides_for(levels), budget.anchors, budget.anchor_scale)),
    "cornernet": HeadKind(
        lambda budget, width, num_classes, levels, depth: CornerNetHead(
            width, num_classes, strides_for(levels), depth=depth, nms=budget.nms, nms_sigma=budget.nms_sigma),
        lambda budget, levels, num_classes: CornerTargets(strides_for(levels)[0], num_classes)),
}


def build_head(budget: Optional[Budget], width: int, num_classes: int, levels: Sequence[int], depth: int) -> nn.Module:
    """The budget's head (FCOS without a budget: the backbone's pretraining)."""
    budget = budget or Budget(name="default")
    return HEADS[budget.head].build(budget, width, num_classes, levels, depth)


def target_maker(budget: Optional[Budget], levels: Sequence[int], num_classes: int) -> Callable:
    budget = budget or Budget(name="default")
    return HEADS[budget.head].targets(budget, levels, num_classes)
