"""torchvision-style use: OrderedDict[str, Tensor] in, OrderedDict[str, Tensor] out."""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Sequence

from torch import Tensor, nn

from .neck import Neck


class NamedNeck(nn.Module):
    """Wraps a Neck for code that passes feature maps by name (torchvision's
    IntermediateLayerGetter -> FeaturePyramidNetwork convention).

    `in_names`: keys of the backbone maps, finest first; `out_names`: keys of the outputs
    (default: the level names, "p3".."p7")."""

    def __init__(self, neck: Neck, in_names: Sequence[str], out_names: Sequence[str] | None = None):
        super().__init__()
        if len(in_names) != len(neck.in_channels):
            raise ValueError(f"in_names has {len(in_names)} keys but the neck takes "
                             f"{len(neck.in_channels)} maps")
        self.neck = neck
        self.in_names = list(in_names)
        self.out_names = list(out_names or [f"p{lv}" for lv in neck.levels])
        if len(self.out_names) != neck.num_outs:
            raise ValueError(f"out_names has {len(self.out_names)} keys but the neck returns "
                             f"{neck.num_outs} maps")

    @property
    def out_channels(self) -> int:
        return self.neck.out_channels

    def forward(self, x: Dict[str, Tensor]) -> "OrderedDict[str, Tensor]":
        missing = [k for k in self.in_names if k not in x]
        if missing:
            raise KeyError(f"missing feature maps {missing}; got {list(x)}")
        outs = self.neck([x[k] for k in self.in_names])
        return OrderedDict(zip(self.out_names, outs))
