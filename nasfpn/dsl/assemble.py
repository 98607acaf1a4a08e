"""Pass 2 of reading: a choice-free template (a genotype file, or a sampled point of a space)
-> Genotype, with the checks that span fields: references, levels, the output rules, and
whether the neck is small enough to build."""

from __future__ import annotations

from pathlib import Path

from . import limits, vocab
from .errors import DSLError, Problem, did_you_mean, line_of
from .schema import DEFAULTABLE_FIELDS, NODE_DEFAULTS, Cell, Feedback, Genotype, Node, Stem, level_name


def assemble(template: dict, source: str | None = None) -> Genotype:
    """Pass 2: a choice-free template -> Genotype, with the checks that span fields."""
    lines = template.get("_lines", {})
    problems: list[Problem] = []

    def error(path: str, message: str) -> None:
        problems.append(Problem(path, message, line_of(path, lines)))

    levels: tuple[int, ...] = template["levels"]
    defaults = template.get("defaults", {})
    stem_t = template.get("stem", {})
    cell_t = template["cell"]
    stem_nodes = [_make_node(n, defaults) for n in stem_t.get("nodes", [])]
    cell_nodes = [_make_node(n, defaults) for n in cell_t["nodes"]]

    p_names = [level_name(lv) for lv in levels]
    s_names = [f"s{i}" for i in range(len(stem_nodes))]
    for i, (node, raw) in enumerate(zip(stem_nodes, stem_t.get("nodes", []))):
        _check_node(node, raw, f"stem.nodes[{i}]", p_names + s_names[:i], f"s{i}", error,
                    later=s_names[i + 1:], hidden=("n",))
        if node.output:
            error(f"stem.nodes[{i}].output", "stem nodes cannot be outputs; outputs are cell nodes")
    n_names = [f"n{i}" for i in range(len(cell_nodes))]
    for i, (node, raw) in enumerate(zip(cell_nodes, cell_t["nodes"])):
        _check_node(node, raw, f"cell.nodes[{i}]", p_names + s_names + n_names[:i], f"n{i}", error,
                    later=n_names[i + 1:], hidden=())

    cell = Cell(nodes=tuple(cell_nodes),
                **{k: cell_t[k] for k in ("repeats", "share_weights", "sum_unused", "outputs_last",
                                          "intermediate_not_finest", "aggregate") if k in cell_t})
    _check_outputs(cell, levels, error)
    stem = Stem(nodes=tuple(stem_nodes),
                **{k: stem_t[k] for k in ("lateral", "lateral_when", "extra", "extra_source",
                                          "extra_relu") if k in stem_t})
    feedback = Feedback(**template["feedback"]) if "feedback" in template else None
    if not problems:
        too_large = size_problem(template["channels"], levels, stem, cell, feedback)
        if too_large:
            error("cell", too_large)
    if problems:
        raise DSLError(problems, source)
    return Genotype(name=template.get("name", Path(source).stem if source else "genotype"),
                    levels=levels, channels=template["channels"], cell=cell, stem=stem,
                    feedback=feedback, paper=template.get("paper", ""),
                    description=template.get("description", ""))


def _make_node(raw: dict, defaults: dict) -> Node:
    merged = {**{k: getattr(NODE_DEFAULTS, k) for k in DEFAULTABLE_FIELDS}, **defaults, **raw}
    params = dict(merged.get("params") or {})
    if merged.get("block"):
        spec = vocab.BLOCKS[merged["block"]]["params"]
        params = {**{k: default for k, (_, default, _) in spec.items()}, **params}
        merged["combine"], merged["fusion"] = NODE_DEFAULTS.combine, NODE_DEFAULTS.fusion
    merged["params"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                    for k, v in params.items()))
    return Node(**{k: merged[k] for k in Node.__dataclass_fields__ if k in merged})


def _check_node(node: Node, raw: dict, path: str, visible: list[str], own: str, error,
                later: list[str], hidden: tuple[str, ...]) -> None:
    for j, name in enumerate(node.inputs):
        where = f"{path}.inputs[{j}]"
        if name in visible:
            continue
        if name == own:
            error(where, f"a node cannot take itself ('{own}') as input")
        elif name in later:
            error(where, f"'{name}' is defined after this node: a node may only use earlier features "
                         f"({', '.join(visible)})")
        elif hidden and name[0] in hidden:
            error(where, f"'{name}' is a cell node: stem nodes see only P-levels and earlier stem nodes")
        else:
            error(where, f"unknown feature '{name}'{did_you_mean(name, visible)}")
    n = len(node.inputs)
    if node.block is not None:
        spec = vocab.BLOCKS[node.block]
        problem = vocab.arity_problem("block", node.block, n)
        if problem:
            error(f"{path}.inputs", problem)
        for key in ("combine", "fusion"):
            if key in raw:
                error(f"{path}.{key}", f"a block node has no '{key}': block '{node.block}' combines itself")
        for key, value in node.params:
            if key not in spec["params"]:
                error(f"{path}.params.{key}", f"unknown parameter '{key}' for block '{node.block}'"
                      + did_you_mean(key, spec["params"]))
            elif message := vocab.PARAM_TYPES[spec["params"][key][0]](value):
                error(f"{path}.params.{key}", message)
        return
    if node.params:
        error(f"{path}.params", "params are only for block nodes (set `block:`)")
    problem = vocab.arity_problem("combine", node.combine, n)
    if problem:
        error(f"{path}.inputs", problem)
    if node.fusion != "none":
        if node.combine != "sum":
            error(f"{path}.fusion", f"fusion '{node.fusion}' weights a sum: it needs combine 'sum', "
                                    f"not '{node.combine}'")
        elif message := vocab.arity_problem("fusion", node.fusion, n):
            error(f"{path}.fusion", message)


def _check_outputs(cell: Cell, levels: tuple[int, ...], error) -> None:
    """The permutation rule (one output per level) and the declared NAS-FPN constraints."""
    seen: dict[int, int] = {}
    for i, node in enumerate(cell.nodes):
        if not node.output:
            continue
        if node.level in seen:
            error(f"cell.nodes[{i}].level", f"two output nodes at level {level_name(node.level)} "
                  f"(n{seen[node.level]} and n{i}): outputs must cover each level exactly once")
        seen.setdefault(node.level, i)
    missing = [level_name(lv) for lv in levels if lv not in seen]
    if missing:
        error("cell.nodes", f"no output node at level {', '.join(missing)}: "
              "outputs (`output: true`) must cover each level exactly once")
    k = len(levels)
    if cell.outputs_last:
        for i, node in enumerate(cell.nodes):
            should = i >= len(cell.nodes) - k
            if node.output != should:
                error(f"cell.nodes[{i}].output", f"outputs_last: the last {k} nodes must be the outputs "
                      f"and no other node may be")
                break
    if cell.intermediate_not_finest:
        for i, node in enumerate(cell.nodes):
            if not node.output and node.level == levels[0]:
                error(f"cell.nodes[{i}].level", f"intermediate_not_finest: an intermediate node may not "
                      f"be at the finest level {level_name(levels[0])}")


def weight_bound(channels: int, levels, stem: Stem, cell: Cell, feedback: Feedback | None) -> int:
    """An upper bound on the neck's weights, before anything is built: 9 x channels^2 per conv op
    and per input edge (a resampling conv) of every node of every stack, plus SFAM's and ASPP's."""
    def units(node: Node) -> int:
        ops = sum(op in vocab.CONV_OPS for op in node.post) + len(node.inputs)
        return 9 * (ops + len(node.param_dict.get("ratios", ())))

    stacks = 1 if cell.share_weights else cell.repeats
    total = sum(units(n) for n in stem.nodes) + stacks * sum(units(n) for n in cell.nodes)
    if cell.aggregate == "sfam":
        total += len(levels) * cell.repeats
    if feedback is not None:
        total += 9 * len(levels) * len(feedback.aspp_dilations)
    return channels * channels * total


def size_problem(channels: int, levels, stem: Stem, cell: Cell, feedback: Feedback | None) -> str | None:
    """Why a neck at `channels` is too large to build, or None."""
    bound = weight_bound(channels, levels, stem, cell, feedback)
    if bound <= limits.MAX_NECK_WEIGHT_BOUND:
        return None
    return (f"too large to build: up to {bound:.3g} weights at {channels} channels x {cell.repeats} "
            f"stack(s) of {len(cell.nodes)} nodes (over MAX_NECK_WEIGHT_BOUND = "
            f"{limits.MAX_NECK_WEIGHT_BOUND:.0e}): use fewer channels, repeats or nodes")
