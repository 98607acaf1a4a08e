"""Where each op of a genotype sits (`Site`): the one computation of an op's arguments that the
compiler builds modules from and the standalone export writes as code."""

from __future__ import annotations

from ..dsl.schema import Genotype, Stem
from ..ops.registry import Op, Site, get
from .plan import NodePlan


def combine_site(plan: NodePlan, channels) -> tuple[Op, Site]:
    """The node's combine op (or block) and its site."""
    node = plan.node
    if node.block is not None:
        return get("block", node.block), Site(channels=channels, n_inputs=len(plan.inputs), params=node.params)
    levels = [lv for _, lv in plan.inputs]
    coarse = 0 if len(levels) < 2 or levels[0] >= levels[1] else 1
    norm_follows = bool(node.post) and get("post", node.post[0]).role == "norm"
    site = Site(channels=channels, n_inputs=len(plan.inputs), coarse=coarse, norm_follows=norm_follows,
                fusion=node.fusion)
    return get("combine", node.combine), site


def extra_site(stem: Stem, k: int, in_channels, channels) -> Site:
    """The k-th extra level (0 = the first the backbone lacks)."""
    return Site(channels=channels, in_channels=in_channels, relu_first=stem.extra_relu and k > 0)


def aggregate_site(g: Genotype, channels) -> Site:
    return Site(channels=channels, n_levels=len(g.levels), repeats=g.cell.repeats)
