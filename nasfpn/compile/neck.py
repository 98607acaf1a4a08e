"""Compile a Genotype into a plain nn.Module with a static forward.

Every decision (which feature an edge reads, how it is resampled, what combine op) is taken
here, once; forward only indexes a list by precomputed ints. The graph modules are TorchScript-
compatible (`torch.jit.script(neck.graph)`); `Neck` wraps them with the mmdetection-style
interface: a list/tuple of backbone maps in (finest first), a tuple of pyramid maps out.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from torch import Tensor, nn

from ..dsl.schema import Genotype, level_name
from ..errors import NasfpnError
from ..ops.blocks import Feedback
from ..ops.post import make_ops
from ..ops.registry import get
from ..ops.resample import make_edge, size_of
from .plan import NodePlan, Plan, make_plan
from .sites import aggregate_site, combine_site, extra_site


class NeckBuildError(NasfpnError, ValueError):
    """A genotype that is valid on its own but cannot be built with the given widths."""


class NodeModule(nn.Module):
    """Resample the inputs to the node's level, combine, add unused same-level features, post-ops."""

    def __init__(self, plan: NodePlan, size_index: int, channels: int):
        super().__init__()
        node = plan.node
        self.size_index = size_index
        self.sources = [i for i, _ in plan.inputs]
        self.unused_sources = [i for i, _ in plan.unused]
        self.edges = nn.ModuleList(make_edge(lv, node.level, node.upsample, node.downsample, channels)
                                   for _, lv in plan.inputs)
        self.unused = nn.ModuleList(make_edge(lv, node.level, node.upsample, node.downsample, channels)
                                    for _, lv in plan.unused)
        op, site = combine_site(plan, channels)
        self.combine = op.build(site)
        self.post = make_ops(node.post, channels, channels)

    def forward(self, feats: List[Tensor]) -> Tensor:
        size = size_of(feats[self.size_index])
        xs: List[Tensor] = []
        for i, edge in enumerate(self.edges):
            xs.append(edge(feats[self.sources[i]], size))
        y = self.combine(xs)
        for i, edge in enumerate(self.unused):
            y = y + edge(feats[self.unused_sources[i]], size)
        return self.post(y)


class CellModule(nn.Module):
    """One stack: P-level inputs + stem features in, one map per level out (finest first)."""

    def __init__(self, plan: Plan, channels: int):
        super().__init__()
        self.nodes = nn.ModuleList(NodeModule(p, plan.levels.index(p.node.level), channels)
                                   for p in plan.cell)
        self.outputs = list(plan.outputs)

    def forward(self, inputs: List[Tensor], stem_feats: List[Tensor]) -> List[Tensor]:
        feats = inputs + stem_feats
        for node in self.nodes:
            feats.append(node(feats))
        return [feats[i] for i in self.outputs]


class StemModule(nn.Module):
    """Backbone maps -> P-level features (laterals, then extras), then the stem nodes."""

    def __init__(self, g: Genotype, plan: Plan, in_channels: Sequence[int], channels: int):
        super().__init__()
        stem = g.stem
        laterals = []
        for i, c in enumerate(in_channels):
            if stem.lateral_when == "channels_differ" and c == channels:
                laterals.append(nn.Identity())
                continue
            try:
                laterals.append(make_ops(stem.lateral, c, channels))
            except ValueError as exc:
                raise NeckBuildError(f"stem.lateral for {level_name(g.levels[i])} ({c} -> {channels} "
                                     f"channels): {exc}") from None
        self.laterals = nn.ModuleList(laterals)
        self.from_input = stem.extra_source == "input"
        extras = []
        width = in_channels[-1] if self.from_input else channels
        for k in range(len(g.levels) - len(in_channels)):
            extras.append(get("extra", stem.extra).build(extra_site(stem, k, width, channels)))
            width = channels
        self.extras = nn.ModuleList(extras)
        self.nodes = nn.ModuleList(NodeModule(p, plan.levels.index(p.node.level), channels)
                                   for p in plan.stem)

    def forward(self, inputs: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        feats: List[Tensor] = []
        for i, lateral in enumerate(self.laterals):
            feats.append(lateral(inputs[i]))
        x = inputs[-1] if self.from_input else feats[-1]
        for extra in self.extras:
            x = extra(x)
            feats.append(x)
        n = len(feats)
        pool = list(feats)
        for node in self.nodes:
            pool.append(node(pool))
        return feats, pool[n:]


class PyramidGraph(nn.Module):
    """The scriptable body: stem, the stacked cells, and how the stacks' outputs are aggregated."""

    def __init__(self, g: Genotype, in_channels: Sequence[int], channels: int):
        super().__init__()
        plan = make_plan(g)
        self.stem = StemModule(g, plan, in_channels, channels)
        if g.cell.share_weights:
            shared = CellModule(plan, channels)
            self.cells = nn.ModuleList([shared] * g.cell.repeats)
        else:
            self.cells = nn.ModuleList(CellModule(plan, channels) for _ in range(g.cell.repeats))
        self.aggregate = get("aggregate", g.cell.aggregate).build(aggregate_site(g, channels))

    def forward(self, inputs: List[Tensor]) -> List[Tensor]:
        return self.run(inputs)[0]

    def run(self, inputs: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """The outputs and the laterals: the stem's features of every level, before any cell
        (what AugFPN's consistent supervision supervises)."""
        feats, stem_feats = self.stem(inputs)
        laterals = feats
        stacks: List[List[Tensor]] = []
        for cell in self.cells:
            feats = cell(feats, stem_feats)
            stacks.append(feats)
        return self.aggregate(stacks), laterals


class Neck(nn.Module):
    """A compiled neck: `neck([c3, c4, c5]) -> (p3, p4, p5, p6, p7)`.

    Attributes follow mmdetection's neck interface: in_channels, out_channels, num_outs.
    Genotypes with `feedback` (DetectoRS RFP) need a backbone with the feedback hook: run them
    with `nasfpn.run_pyramid(backbone, neck, images)`; calling the neck alone is one pass.
    """

    def __init__(self, g: Genotype, in_channels: Sequence[int], out_channels: int | None = None):
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not 1 <= len(in_channels) <= len(g.levels):
            raise NeckBuildError(f"{g.name}: got {len(in_channels)} backbone maps, but the genotype's "
                                 f"pyramid {g.level_names[0]}..{g.level_names[-1]} takes 1 to "
                                 f"{len(g.levels)} (finest first)")
        self.genotype = g
        self.in_channels = in_channels
        self.out_channels = int(out_channels or g.channels)
        self.num_outs = len(g.levels)
        self.levels = g.levels
        self.graph = PyramidGraph(g, in_channels, self.out_channels)
        self.feedback = (Feedback(self.out_channels, g.feedback.aspp_dilations, len(in_channels), g.feedback.steps,
                                  get("feedback_fusion", g.feedback.fusion).make)
                         if g.feedback is not None else None)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        self._check(inputs)
        return tuple(self.graph(list(inputs)))

    def with_laterals(self, inputs: Sequence[Tensor]) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
        """The outputs and the laterals (see PyramidGraph.run)."""
        self._check(inputs)
        outs, laterals = self.graph.run(list(inputs))
        return tuple(outs), tuple(laterals)

    def _check(self, inputs: Sequence[Tensor]) -> None:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"{self.genotype.name}: expected {len(self.in_channels)} backbone maps "
                             f"(built with in_channels={self.in_channels}), got {len(inputs)}")


def build_neck(g: Genotype, in_channels: Sequence[int], out_channels: int | None = None) -> Neck:
    """Compile a genotype. `out_channels` overrides the genotype's `channels` (the neck width)."""
    return Neck(g, in_channels, out_channels)
