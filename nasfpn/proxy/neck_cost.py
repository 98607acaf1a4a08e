"""What a neck costs, computed from its genotype without training or allocating a weight (shapes
on the meta device): what `nasfpn show` prints, and the params and FLOPs a trial records
(`neck_params`, `neck_flops`), which search constraints judge a sampled point by."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..compile import build_neck
from ..dsl import Genotype
from ..dsl.budget import Budget
from .backbones import out_channels
from .cost import count_params, module_flops
from .loader import Frame


def neck_cost(genotype: Genotype, in_channels: Sequence[int], width: int, side: int) -> dict[str, int]:
    """Params and FLOPs (batch 1) of the neck on backbone maps of a `side` x `side` input."""
    sizes = [math.ceil(side / 2 ** lv) for lv in genotype.levels[: len(in_channels)]]
    with torch.device("meta"):
        neck = build_neck(genotype, list(in_channels), width)
        xs = [torch.zeros(1, c, s, s) for c, s in zip(in_channels, sizes)]
    return {"neck_params": count_params(neck), "neck_flops": module_flops(neck.graph, xs)}


def trial_neck_cost(genotype: Genotype, budget: Budget) -> dict[str, int]:
    """The cost as a trial under `budget` measures it: its backbone's widths, its width, the square
    canvas the cost is measured on."""
    side = Frame(budget.image_size, 2 ** max(genotype.levels)).square
    return neck_cost(genotype, out_channels(budget.backbone), budget.width, side)
