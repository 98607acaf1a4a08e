"""What a neck costs, computed from its genotype without training: the params and FLOPs a trial
records (`neck_params`, `neck_flops`: batch 1, the budget's width and backbone widths, features
of the square canvas the trial is measured on), for search constraints."""

from __future__ import annotations

import torch

from ..compile import build_neck
from ..dsl import Genotype
from ..dsl.budget import Budget
from .backbones import out_channels
from .cost import count_params, module_flops
from .prepare import feature_shapes


def neck_cost(genotype: Genotype, budget: Budget) -> dict[str, int]:
    channels = out_channels(budget.backbone)
    neck = build_neck(genotype, channels, budget.width)
    feats = [torch.zeros(1, *shape) for shape in feature_shapes(budget, genotype.levels, channels)]
    return {"neck_params": count_params(neck), "neck_flops": module_flops(neck, feats)}
