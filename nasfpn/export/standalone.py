"""Export a genotype as a standalone .py file: plain PyTorch, no nasfpn import.

The file is written from the genotype's plan and the op registry, never from a built module: the
op classes it uses are nasfpn's own source (copied, one copy of the code), each submodule is the
registry's call for that op at that site (`Op.call_source`, the same arguments the compiler
builds with), and it reads top to bottom: a `Cell` whose forward is one line per node, then the
neck class with the mmdetection interface (in_channels, out_channels, num_outs; list in, tuple
out). The submodules mirror the compiled neck's, so `load_compiled_state_dict` maps a compiled
neck's state_dict onto the exported class by renaming prefixes.
"""

from __future__ import annotations

import inspect
import keyword
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..compile import feedback as feedback_loop
from ..compile.plan import NodePlan, Plan, make_plan
from ..compile.sites import aggregate_site, combine_site, extra_site
from ..dsl.schema import Genotype
from ..files import write_text
from ..ops.blocks import ASPP, Feedback
from ..ops.post import post_sites
from ..ops.registry import Source, exported_name, get
from ..ops.resample import edge_op, size_of

WIDTH = Source("width")


@dataclass
class _Module:
    """What one generated class collects: constructor lines, forward lines, the compiled
    state_dict prefix of each submodule, and the nasfpn sources its calls need."""

    init: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    sources: list = field(default_factory=list)

    def sub(self, attr: str, call: str, compiled: str | None, needs: Sequence = ()) -> str:
        self.init.append(f"self.{attr} = {call}")
        if compiled is not None:
            self.keys[compiled] = attr
        self.sources += [s for s in needs if s not in self.sources]
        return f"self.{attr}"


def check_class_name(name: str) -> str:
    """The class name of a generated file must be a plain Python identifier (nothing else is
    ever written into the code)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name) or keyword.iskeyword(name):
        raise ValueError(f"class name {name!r} is not a Python identifier (letters, digits and '_', "
                         "not starting with a digit, not a keyword)")
    return name


def _post_call(names: Sequence[str], in_channels, out_channels, needs: list) -> str | None:
    """The source of `make_ops(names, ...)`: the op itself, nn.Sequential of them, or None."""
    calls = []
    for op, site in post_sites(names, in_channels, out_channels):
        calls.append(op.call_source(site))
        needs += op.sources(site)
    if len(calls) == 1:
        return calls[0]
    return f"nn.Sequential({', '.join(calls)})" if calls else None


def _node(p: NodePlan, names: dict[int, str], m: _Module, prefix: str) -> None:
    """One node: its submodules go to `m.init`, its one forward line to `m.body`."""
    node = p.node
    ref = f"size_of(p{node.level})"
    terms = []
    for group, edges in (("in", p.inputs), ("unused", p.unused)):
        for e, (index, level) in enumerate(edges):
            found = edge_op(level, node.level, node.upsample, node.downsample, WIDTH)
            if found is None:
                terms.append(names[index])
                continue
            op, site = found
            compiled = f"{prefix}.{'edges' if group == 'in' else 'unused'}.{e}"
            attr = m.sub(f"{p.name}_{group}{e}", op.call_source(site), compiled, op.sources(site))
            terms.append(f"{attr}({names[index]}, {ref})")
    n_in = len(p.inputs)
    op, site = combine_site(p, WIDTH)
    combine = m.sub(f"{p.name}_combine", op.call_source(site), f"{prefix}.combine", op.sources(site))
    value = " + ".join([f"{combine}([{', '.join(terms[:n_in])}])", *terms[n_in:]])
    needs: list = []
    post = _post_call(node.post, WIDTH, WIDTH, needs)
    if post is not None:
        value = f"{m.sub(f'{p.name}_post', post, f'{prefix}.post', needs)}({value})"
    m.body.append(f"{p.name} = {value}")


def _feature_names(plan: Plan) -> dict[int, str]:
    names = {i: f"p{lv}" for i, lv in enumerate(plan.levels)}
    for p in plan.stem + plan.cell:
        names[p.index] = p.name
    return names


def _cell(plan: Plan, names: dict[int, str]) -> _Module:
    cell = _Module()
    for j, p in enumerate(plan.cell):
        _node(p, names, cell, f"nodes.{j}")
    cell.body.append(f"return {', '.join(names[i] for i in plan.outputs)}")
    return cell


def _lateral(g: Genotype, i: int, neck: _Module) -> None:
    level = f"p{g.levels[i]}"
    needs: list = []
    call = _post_call(g.stem.lateral, Source(f"in_channels[{i}]"), WIDTH, needs) or "nn.Sequential()"
    if g.stem.lateral_when == "channels_differ":  # identity at equal widths, as compiled
        call = f"nn.Identity() if in_channels[{i}] == width else {call}"
    neck.sub(f"lateral_{level}", call, f"graph.stem.laterals.{i}", needs)
    neck.body.append(f"{level} = self.lateral_{level}(inputs[{i}])")


def _neck(g: Genotype, plan: Plan, names: dict[int, str], n_in: int) -> _Module:
    neck = _Module()
    levels = [f"p{lv}" for lv in g.levels]
    for i in range(n_in):
        _lateral(g, i, neck)
    source = "inputs[-1]" if g.stem.extra_source == "input" else levels[n_in - 1]
    op = get("extra", g.stem.extra)
    for k, level in enumerate(levels[n_in:]):
        width = Source("in_channels[-1]") if k == 0 and g.stem.extra_source == "input" else WIDTH
        site = extra_site(g.stem, k, width, WIDTH)
        neck.sub(f"extra_{level}", op.call_source(site), f"graph.stem.extras.{k}", op.sources(site))
        neck.body.append(f"{level} = self.extra_{level}({source})")
        source = level
    for j, p in enumerate(plan.stem):
        _node(p, names, neck, f"graph.stem.nodes.{j}")
    if g.cell.share_weights and g.cell.repeats > 1:
        neck.init += ["cell = Cell(width)", f"self.cells = nn.ModuleList([cell] * {g.cell.repeats})  # shared"]
    else:
        neck.init.append(f"self.cells = nn.ModuleList(Cell(width) for _ in range({g.cell.repeats}))")
    op, site = get("aggregate", g.cell.aggregate), aggregate_site(g, WIDTH)
    neck.sub("aggregate", op.call_source(site), "graph.aggregate", op.sources(site))
    if g.feedback is not None:
        fusion = get("feedback_fusion", g.feedback.fusion).make
        call = (f"Feedback(width, {list(g.feedback.aspp_dilations)}, {n_in}, {g.feedback.steps}, "
                f"{exported_name(fusion)})")
        neck.sub("feedback", call, "feedback", [ASPP, fusion, Feedback, feedback_loop.run_pyramid])
    stem_args = ", ".join(levels + [p.name for p in plan.stem])
    neck.body += ["stacks = []", "for cell in self.cells:", f"    {', '.join(levels)} = cell({stem_args})",
                  f"    stacks.append([{', '.join(levels)}])", "return tuple(self.aggregate(stacks))"]
    return neck


def _indent(lines: Sequence[str], spaces: int = 8) -> str:
    return textwrap.indent("\n".join(lines), " " * spaces)


def _table(keys: dict[str, str]) -> str:
    return _indent([f'"{k}": "{v}",' for k, v in keys.items()], 4)


def _op_sources(cell: _Module, neck: _Module) -> str:
    """nasfpn's own source of every class and function the file calls, each once, in use order."""
    ordered = [size_of]
    for obj in cell.sources + neck.sources:
        if obj not in ordered:
            ordered.append(obj)
    return "\n\n\n".join(textwrap.dedent(inspect.getsource(obj)).strip() for obj in ordered)


def standalone_source(g: Genotype, in_channels: Sequence[int], out_channels: int | None = None,
                      class_name: str = "ExportedNeck") -> str:
    check_class_name(class_name)
    out_channels = int(out_channels or g.channels)
    in_channels = [int(c) for c in in_channels]
    plan = make_plan(g)
    names = _feature_names(plan)
    levels = [f"p{lv}" for lv in g.levels]
    cell, neck = _cell(plan, names), _neck(g, plan, names, len(in_channels))
    stem_args = ", ".join(levels + [p.name for p in plan.stem])
    recursion = (f"\n\n    Recursive (DetectoRS RFP, {g.feedback.steps} passes): run it with\n    `run_pyramid("
                 "backbone, neck, images)` and a backbone that takes `feedback=`." if g.feedback else "")
    header = (f'"""{g.name}: a feature-pyramid neck exported by nasfpn (plain PyTorch, no nasfpn import).\n'
              + (f"\n{g.paper}\n" if g.paper else "")
              + f"\n    neck = {class_name}(in_channels={in_channels}, out_channels={out_channels})\n"
              + f"    {', '.join(levels)} = neck([{', '.join(f'c{lv}' for lv in g.levels[:len(in_channels)])}])"
              + '   # finest first\n"""')
    return _TEMPLATE.format(
        header=header, ops=_op_sources(cell, neck), name=g.name, levels=", ".join(levels),
        stem_note=" + stem features" if plan.stem else "", cell_init=_indent(cell.init), stem_args=stem_args,
        cell_body=_indent(cell.body), class_name=class_name, first=levels[0].upper(), last=levels[-1].upper(),
        repeats=g.cell.repeats, recursion=recursion, in_channels=tuple(in_channels), width=out_channels,
        n_in=len(in_channels), n_out=len(levels), neck_init=_indent(neck.init), neck_body=_indent(neck.body),
        keys=_table(neck.keys), cell_keys=_table(cell.keys))


_TEMPLATE = '''{header}

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


{ops}


class Cell(nn.Module):
    """One stack of the {name} cell: {levels}{stem_note} in, one map per level out."""

    def __init__(self, width: int):
        super().__init__()
{cell_init}

    def forward(self, {stem_args}):
{cell_body}


class {class_name}(nn.Module):
    """{name}: levels {first}..{last}, {repeats} stack(s).{recursion}"""

    def __init__(self, in_channels={in_channels}, out_channels={width}, num_outs={n_out}):
        super().__init__()
        if len(in_channels) != {n_in} or num_outs != {n_out}:
            raise ValueError("this neck takes {n_in} backbone maps and returns {n_out} (num_outs)")
        self.in_channels = list(in_channels)
        self.out_channels = width = out_channels
        self.num_outs = num_outs
{neck_init}

    def forward(self, inputs: List[Tensor]):
{neck_body}


# state_dict prefixes of the nasfpn-compiled neck -> this module's ("graph.cells.K." -> "cells.K.")
COMPILED_KEYS = {{
{keys}
}}
COMPILED_CELL_KEYS = {{
{cell_keys}
}}


def load_compiled_state_dict(module: nn.Module, state: dict) -> None:
    """Load the state_dict of a nasfpn-compiled neck (same genotype and widths) into `module`."""
    renamed = {{}}
    for key, value in state.items():
        prefix, table = "", COMPILED_KEYS
        if key.startswith("graph.cells."):
            stack, key = key[len("graph.cells."):].split(".", 1)
            prefix, table = f"cells.{{stack}}.", COMPILED_CELL_KEYS
        for old, new in sorted(table.items(), key=lambda kv: -len(kv[0])):
            if key.startswith(old + "."):
                renamed[prefix + new + key[len(old):]] = value
                break
        else:
            raise KeyError(f"unexpected key {{key}}")
    module.load_state_dict(renamed)
'''


def write_standalone(g: Genotype, in_channels: Sequence[int], path: str | Path, out_channels: int | None = None,
                     class_name: str = "ExportedNeck") -> Path:
    return write_text(path, standalone_source(g, in_channels, out_channels, class_name))
