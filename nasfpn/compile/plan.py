"""The static plan of a genotype: which feature each edge reads, what NAS-FPN's unused-feature
rule adds to each output node, and which nodes are dead (pruned). Shared by the compiler, `show`,
the drawing and the exporters, so they all agree on one graph.

Feature indices within one stack: [P-levels] + [live stem nodes] + [live cell nodes].
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dsl.schema import Genotype, Node, level_name
from ..ops.registry import get


@dataclass(frozen=True)
class NodePlan:
    name: str                                  # "n3" / "s0": the name the genotype uses
    node: Node
    index: int                                 # position in the runtime feature list
    inputs: tuple[tuple[int, int], ...]        # (runtime index, source level) per input, in order
    unused: tuple[tuple[int, int], ...]        # same-level features summed in (sum_unused rule)
    input_names: tuple[str, ...]
    unused_names: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...]
    stem: tuple[NodePlan, ...]                 # live stem nodes
    cell: tuple[NodePlan, ...]                 # live cell nodes
    outputs: tuple[int, ...]                   # runtime index of each level's output, finest first
    pruned: tuple[str, ...]                    # names of dead nodes (nothing reaches an output)

    @property
    def n_levels(self) -> int:
        return len(self.levels)


def _unused_inputs(g: Genotype) -> list[tuple[str, ...]]:
    """NAS-FPN rule, as the TF reference applies it: when an output node is built, every feature
    at its level that no node has consumed so far is summed into it (and counts as consumed)."""
    pool = [(name, lv) for name, lv in zip(g.level_names, g.levels)]
    pool += [(f"s{i}", n.level) for i, n in enumerate(g.stem.nodes)]
    consumed = {name: 0 for name, _ in pool}
    extras: list[tuple[str, ...]] = []
    for i, node in enumerate(g.cell.nodes):
        for name in node.inputs:
            consumed[name] += 1
        added: tuple[str, ...] = ()
        if g.cell.sum_unused and node.output:
            added = tuple(name for name, lv in pool if lv == node.level and consumed[name] == 0)
            for name in added:
                consumed[name] += 1
        extras.append(added)
        pool.append((f"n{i}", node.level))
        consumed[f"n{i}"] = 0
    return extras


def make_plan(g: Genotype) -> Plan:
    extras = _unused_inputs(g)
    # Liveness: back from the outputs through inputs and summed-in unused features.
    live: set[str] = {f"n{i}" for i, n in enumerate(g.cell.nodes) if n.output}
    for i in reversed(range(len(g.cell.nodes))):
        if f"n{i}" in live:
            live.update(g.cell.nodes[i].inputs)
            live.update(extras[i])
    for i in reversed(range(len(g.stem.nodes))):
        if f"s{i}" in live:
            live.update(g.stem.nodes[i].inputs)

    where: dict[str, tuple[int, int]] = {name: (i, lv) for i, (name, lv) in
                                         enumerate(zip(g.level_names, g.levels))}
    stem_plans = []
    for i, node in enumerate(g.stem.nodes):
        name = f"s{i}"
        if name not in live:
            continue
        stem_plans.append(NodePlan(name, node, len(where), tuple(where[x] for x in node.inputs), (),
                                   node.inputs, ()))
        where[name] = (len(where), node.level)
    cell_plans = []
    for i, node in enumerate(g.cell.nodes):
        name = f"n{i}"
        if name not in live:
            continue
        cell_plans.append(NodePlan(name, node, len(where), tuple(where[x] for x in node.inputs),
                                   tuple(where[x] for x in extras[i]), node.inputs, extras[i]))
        where[name] = (len(where), node.level)
    outputs = tuple(where[f"n{i}"][0] for _, i in g.outputs())
    pruned = tuple(f"s{i}" for i in range(len(g.stem.nodes)) if f"s{i}" not in live) + \
        tuple(f"n{i}" for i in range(len(g.cell.nodes)) if f"n{i}" not in live)
    return Plan(g.levels, tuple(stem_plans), tuple(cell_plans), outputs, pruned)


def describe(plan: Plan) -> list[str]:
    """One line per live node, the way `nasfpn show` prints it."""
    lines = []
    for p in plan.stem + plan.cell:
        n = p.node
        op = n.block or (n.combine if n.fusion == "none" else f"{n.combine}[{n.fusion}]")
        ins = ", ".join(p.input_names) + (f" + unused {', '.join(p.unused_names)}" if p.unused_names else "")
        post = "-".join(n.post) or "identity"
        flag = "  -> output" if n.output else ""
        lines.append(f"{p.name:>4} {level_name(n.level)}  {op}({ins})  post {post}{flag}")
    return lines


def _symmetric(node: Node, levels: list[int]) -> bool:
    """Whether swapping the node's inputs leaves the function class unchanged (the op's entry
    says; sum's weights follow their inputs, concat + 1x1 conv is symmetric too)."""
    op = get("block", node.block) if node.block is not None else get("combine", node.combine)
    return op.symmetric(levels)


def graph_key(g: Genotype) -> str:
    """Identity of the computation a genotype builds: equal for genotypes that differ only in
    dead nodes, node numbering or the order of a symmetric op's inputs. A Merkle hash: each live
    node hashes its own settings with its inputs' hashes."""
    import hashlib
    import json

    plan = make_plan(g)
    digest: dict[int, str] = {i: f"P{lv}" for i, lv in enumerate(plan.levels)}
    for p in plan.stem + plan.cell:
        n = p.node
        ins = [digest[i] for i, _ in p.inputs]
        if _symmetric(n, [lv for _, lv in p.inputs]):
            ins = sorted(ins)
        fields = [p.name[0], n.level, n.combine, n.fusion, n.upsample, n.downsample, list(n.post), n.output,
                  n.block, [list(kv) for kv in n.params], ins, sorted(digest[i] for i, _ in p.unused)]
        digest[p.index] = hashlib.sha1(json.dumps(fields, default=str).encode()).hexdigest()[:16]
    outputs = [digest[i] for i in plan.outputs]
    whole = [g.levels, g.channels, [getattr(g.stem, f) for f in ("lateral", "lateral_when", "extra",
                                                                   "extra_source", "extra_relu")],
             g.cell.repeats, g.cell.share_weights, g.cell.aggregate, outputs,
             None if g.feedback is None else [g.feedback.steps, list(g.feedback.aspp_dilations),
                                               g.feedback.fusion]]
    return hashlib.sha1(json.dumps(whole, default=str).encode()).hexdigest()[:16]
