"""Pass-through initialisation of a neck, the proxy's way to score deep necks fairly early.

At PyTorch's default init a stack of relu-conv-bn merge nodes (NAS-FPN's 3 or 7 cells, M2Det's
TUMs) scrambles its input, and a short schedule spends itself on getting the stack to pass
features at all: the proxy then ranks necks by how fast they start to learn, not by what they
learn. Started as a pass-through — every channel-preserving conv near the identity (a strided
one near subsampling), every conv over concatenated maps (a concat merge, M2Det's SFAM) near
their mean — each node starts as a normalized sum of its resampled inputs (what an FPN's merges
compute), so a deep neck starts where a shallow one does. benchmarks/proxy_fidelity.py measures
what this does to the ranking.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops.registry import init_rules

NOISE = 0.5  # the default init's weights, scaled, on top of the pass-through: breaks symmetry


@torch.no_grad()
def passthrough_init_(neck: nn.Module, noise: float = NOISE) -> int:
    """Every undilated, ungrouped conv of `neck` whose input and output widths match becomes
    identity + `noise` x its current (default-initialised) weights (with stride 2, identity
    means taking every other pixel); the convs an op's registry entry names in its init rule
    (the 1x1 conv of a concat merge, each of SFAM's reduce convs) start where the rule says (the
    mean of the concatenated maps) + the same noise. Other convs (laterals between widths,
    depthwise, dilated) keep their init, as do biases. Returns how many convs changed."""
    rules = init_rules()
    starts: dict[nn.Conv2d, torch.Tensor] = {}
    for m in neck.modules():
        rule = rules.get(type(m))
        if rule is not None:
            starts.update(rule(m))
    for m in neck.modules():  # a concat of one map (or SFAM over one stack) is square too: once
        if (isinstance(m, nn.Conv2d) and m not in starts and m.in_channels == m.out_channels
                and m.groups == 1 and m.dilation == (1, 1)):
            starts[m] = nn.init.dirac_(torch.empty_like(m.weight))
    for conv, start in starts.items():
        conv.weight.mul_(noise).add_(start)
    return len(starts)
