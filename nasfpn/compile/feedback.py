"""The backbone hook DetectoRS' recursive feature pyramid (`rfp`) needs, and the loop that runs it.

A feedback-capable backbone is called as `backbone(images, feedback=None)` and returns its maps
finest first (C3, C4, C5). With `feedback`, a list holding one tensor per returned map, of the
neck's `out_channels` and that map's spatial size, it adds feedback[i] (through a 1x1 conv of
its own, zero-initialised) to the output of the first block of the stage producing map i, then
runs the rest of the stage as usual. The proxy backbone implements this hook.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from torch import Tensor

from .neck import Neck


class FeedbackBackbone(Protocol):
    def __call__(self, images: Tensor, feedback: Sequence[Tensor] | None = None) -> Sequence[Tensor]: ...


def run_pyramid(backbone, neck: Neck, images: Tensor) -> tuple[Tensor, ...]:
    """Backbone then neck; for a genotype with `feedback`, the recursion: ASPP of the pyramid goes
    back into the backbone, the neck runs again, and the passes are fused by the learned gate."""
    outs = neck(backbone(images))
    if neck.feedback is None:
        return outs
    for _ in range(neck.feedback.steps - 1):
        feats = backbone(images, feedback=neck.feedback.signals(outs))
        outs = tuple(neck.feedback.merge(neck(feats), outs))
    return outs
