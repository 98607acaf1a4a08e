"""Genotype -> plain dict -> YAML text that reads back to the same Genotype."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import yaml

from .schema import DEFAULTABLE_FIELDS, NODE_DEFAULTS, Cell, Genotype, Node, Stem, level_name


class _Flow(dict):
    """A mapping written on one line: `- {level: P4, inputs: [P4, n0]}`."""


class _FlowList(list):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(),
                                                                 flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v,
                                                                     flow_style=True))


def _plain(value):
    if isinstance(value, tuple):
        return _FlowList(_plain(v) for v in value)
    return value


def _node_defaults(nodes: list[Node]) -> dict:
    """The most common value of each defaultable field among merge nodes: keeps node lines short."""
    merge_nodes = [n for n in nodes if n.block is None] or [NODE_DEFAULTS]
    out = {}
    for key in DEFAULTABLE_FIELDS:
        counts = Counter(getattr(n, key) for n in merge_nodes)
        out[key] = counts.most_common(1)[0][0]
    out["output"] = False  # outputs are marked per node
    return out


def _node_dict(node: Node, defaults: dict) -> dict:
    d = _Flow(level=level_name(node.level), inputs=_plain(node.inputs))
    if node.block is not None:
        d["block"] = node.block
        d["params"] = _Flow((k, _plain(v)) for k, v in node.params)
    for key in DEFAULTABLE_FIELDS:
        if node.block is not None and key in ("combine", "fusion"):
            continue
        value = getattr(node, key)
        if value != defaults[key]:
            d[key] = _plain(value)
    return d


def to_dict(g: Genotype) -> dict:
    nodes = list(g.stem.nodes) + list(g.cell.nodes)
    defaults = _node_defaults(nodes)
    out: dict = {"kind": "genotype", "name": g.name}
    if g.paper:
        out["paper"] = g.paper
    if g.description:
        out["description"] = g.description
    out["levels"] = _FlowList(g.level_names)
    out["channels"] = g.channels
    stem = {f.name: _plain(getattr(g.stem, f.name)) for f in fields(Stem) if f.name != "nodes"}
    if g.stem.nodes:
        stem["nodes"] = [_node_dict(n, defaults) for n in g.stem.nodes]
    out["stem"] = stem
    out["defaults"] = {k: _plain(v) for k, v in defaults.items()}
    cell = {f.name: getattr(g.cell, f.name) for f in fields(Cell) if f.name != "nodes"}
    cell["nodes"] = [_node_dict(n, defaults) for n in g.cell.nodes]
    out["cell"] = cell
    if g.feedback is not None:
        out["feedback"] = {f.name: _plain(getattr(g.feedback, f.name)) for f in fields(g.feedback)}
    return out


def to_yaml(g: Genotype) -> str:
    header = f"# {g.name}" + (f": {g.paper}" if g.paper else "") + "\n"
    return header + yaml.dump(to_dict(g), Dumper=_Dumper, sort_keys=False, width=100)
