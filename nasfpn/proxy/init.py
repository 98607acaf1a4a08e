"""Near-identity initialisation of a neck, the proxy's way to score deep necks fairly early.

At PyTorch's default init a stack of relu-conv-bn merge nodes (NAS-FPN's 3 or 7 cells, M2Det's
TUMs) scrambles its input, and a short schedule spends itself on getting the stack to pass
features at all: the proxy then ranks necks by how fast they start to learn, not by what they
learn. With every channel-preserving conv started near the identity (a strided one near
subsampling), each node starts as a normalized sum of its resampled inputs (what an FPN's merges
compute), so a deep neck starts where a shallow one does. benchmarks/proxy_fidelity.py measures
what this does to the ranking.
"""

from __future__ import annotations

import torch
from torch import nn

NOISE = 0.5  # the default init's weights, scaled, on top of the identity: breaks symmetry


@torch.no_grad()
def near_identity_(neck: nn.Module, noise: float = NOISE) -> int:
    """Every undilated, ungrouped conv of `neck` whose input and output widths match becomes
    identity + `noise` x its current (default-initialised) weights; with stride 2, identity means
    taking every other pixel. Other convs (laterals between widths, depthwise, dilated) keep
    their init, as do biases. Returns how many convs changed."""
    changed = 0
    for m in neck.modules():
        if (isinstance(m, nn.Conv2d) and m.in_channels == m.out_channels and m.groups == 1
                and m.dilation == (1, 1)):
            default = m.weight.clone()
            nn.init.dirac_(m.weight)
            m.weight.add_(noise * default)
            changed += 1
    return changed
