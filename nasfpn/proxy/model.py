"""The proxy detector: backbone -> neck (any genotype) -> the budget's head (heads/)."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..compile import build_neck
from ..dsl import Genotype, from_dict
from ..dsl.budget import Budget
from .backbones import normalize
from .heads import build_head


def plain_laterals(levels: Sequence[str] = ("P3", "P4", "P5", "P6", "P7")) -> Genotype:
    """A neck without any cross-level path (1x1 laterals, P6/P7 by stride-2 convs): the neutral
    neck the shared backbone is pretrained with, so its features favour no neck under test."""
    return from_dict({
        "name": "plain-laterals", "levels": list(levels), "channels": 64,
        "stem": {"lateral": ["conv1x1"], "extra": "conv", "extra_source": "input", "extra_relu": True},
        "defaults": {"post": []},
        "cell": {"nodes": [{"level": lv, "inputs": [lv], "output": True} for lv in levels]},
    })


class Detector(nn.Module):
    """`budget` picks the head and its settings (FCOS when None) and whether the laterals are
    supervised too (AugFPN's consistent supervision, while training)."""

    def __init__(self, genotype: Genotype, num_classes: int, width: int, head_depth: int,
                 backbone: Optional[nn.Module] = None, backbone_channels: Sequence[int] = (64, 128, 256),
                 budget: Optional[Budget] = None):
        super().__init__()
        self.backbone = backbone
        self.backbone_frozen = False  # set by the training loop: then its first pass records no graph
        self.round_features = False   # features rounded to fp16, as the feature cache stores them
        channels = backbone.out_channels if backbone is not None else list(backbone_channels)
        self.neck = build_neck(genotype, channels, width)
        self.head = build_head(budget, width, num_classes, genotype.levels, head_depth)
        self.supervision_weight = budget.supervision_weight if budget and budget.consistent_supervision else 0.0

    @property
    def recursive(self) -> bool:
        return self.neck.feedback is not None

    def normalize(self, images_uint8: Tensor) -> Tensor:
        return normalize(images_uint8, self.backbone)

    def pyramid(self, images: Optional[Tensor] = None, feats: Optional[List[Tensor]] = None,
                laterals: bool = False) -> tuple:
        """Neck outputs from normalized images, or from precomputed backbone features (the first
        pass of a recursive neck can use them; its later passes need the images); with
        `laterals`, (outputs, the first pass's laterals)."""
        if feats is None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
                feats = self.backbone(images)
            if self.round_features:
                feats = [f.half().float() for f in feats]
        outs, lateral_feats = self.neck.with_laterals(feats) if laterals else (self.neck(feats), ())
        if self.neck.feedback is not None:
            for _ in range(self.neck.feedback.steps - 1):
                again = self.backbone(images, feedback=self.neck.feedback.signals(outs))
                outs = tuple(self.neck.feedback.merge(self.neck(again), outs))
        return (outs, lateral_feats) if laterals else outs

    def forward(self, images: Optional[Tensor] = None, feats: Optional[List[Tensor]] = None,
                targets: Optional[dict] = None) -> dict:
        """The head's predictions; while training with consistent supervision, those on the
        laterals too, under `aux`."""
        if self.supervision_weight > 0 and self.training:
            outs, laterals = self.pyramid(images, feats, laterals=True)
            return {**self.head(outs, targets), "aux": self.head(laterals, targets)}
        return self.head(self.pyramid(images, feats), targets)

    def loss(self, out: dict, targets: dict) -> dict[str, Tensor]:
        """The head's losses and their sum `total`; with consistent supervision, plus the weighted
        losses on the laterals (`aux_*`), all in the one sum that is back-propagated once."""
        losses = self.head.loss(out, targets)
        if "aux" in out:
            aux = self.head.loss(out["aux"], targets)
            losses = {**losses, **{f"aux_{k}": v for k, v in aux.items()},
                      "total": losses["total"] + self.supervision_weight * aux["total"]}
        return losses


def count_model(detector: Detector) -> dict[str, int]:
    """Parameter counts of the neck and of the whole detector."""
    total = sum(p.numel() for p in detector.parameters())
    neck = sum(p.numel() for p in detector.neck.parameters())
    return {"neck_params": neck, "model_params": total}

