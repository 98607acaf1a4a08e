"""The proxy detector: backbone -> neck (any genotype) -> dense head."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..compile import build_neck
from ..dsl import Genotype, from_dict
from .backbones import normalize
from .head import DenseHead


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
    def __init__(self, genotype: Genotype, num_classes: int, width: int, head_depth: int,
                 backbone: Optional[nn.Module] = None, backbone_channels: Sequence[int] = (64, 128, 256)):
        super().__init__()
        self.backbone = backbone
        self.backbone_frozen = False  # set by the training loop: then its first pass records no graph
        self.round_features = False   # features rounded to fp16, as the feature cache stores them
        channels = backbone.out_channels if backbone is not None else list(backbone_channels)
        self.neck = build_neck(genotype, channels, width)
        self.strides = [2 ** lv for lv in genotype.levels]
        self.head = DenseHead(width, num_classes, self.strides, depth=head_depth)

    @property
    def recursive(self) -> bool:
        return self.neck.feedback is not None

    def normalize(self, images_uint8: Tensor) -> Tensor:
        return normalize(images_uint8, self.backbone)

    def pyramid(self, images: Optional[Tensor] = None, feats: Optional[List[Tensor]] = None) -> tuple:
        """Neck outputs from normalized images, or from precomputed backbone features (the first
        pass of a recursive neck can use them; its later passes need the images)."""
        if feats is None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
                feats = self.backbone(images)
            if self.round_features:
                feats = [f.half().float() for f in feats]
        outs = self.neck(feats)
        if self.neck.feedback is not None:
            for _ in range(self.neck.feedback.steps - 1):
                again = self.backbone(images, feedback=self.neck.feedback.signals(outs))
                outs = tuple(self.neck.feedback.merge(self.neck(again), outs))
        return outs

    def forward(self, images: Optional[Tensor] = None, feats: Optional[List[Tensor]] = None):
        return self.head(self.pyramid(images, feats))


def count_model(detector: Detector) -> dict[str, int]:
    """Parameter counts of the neck and of the whole detector."""
    total = sum(p.numel() for p in detector.parameters())
    neck = sum(p.numel() for p in detector.neck.parameters())
    return {"neck_params": neck, "model_params": total}

