"""Export a compiled neck as a standalone .py file: plain PyTorch, no nasfpn import.

The file reads top to bottom like hand-written code: the few op classes the neck uses (their
source, copied from nasfpn.ops), a `Cell` whose forward is one line per node, and the neck
class with the mmdetection interface (in_channels, out_channels, num_outs; list in, tuple out).
Submodules are built from the compiled module's own objects, so the two have the same weights
layout; `load_compiled_state_dict` maps a compiled neck's state_dict onto the exported class.
"""

from __future__ import annotations

import inspect
import keyword
import re
import textwrap
from pathlib import Path

from torch import nn

from ..compile.neck import Neck, NodeModule
from ..compile.plan import NodePlan, make_plan
from ..files import write_text
from ..ops import blocks, fuse, post, resample
from ..ops.post import make_ops

HELPERS = '''
def resize_up(x: Tensor, ref: Tensor, mode: str) -> Tensor:
    """Upsample to the exact size of `ref` (odd sizes included)."""
    return F.interpolate(x, size=[ref.shape[-2], ref.shape[-1]], mode=mode,
                         align_corners=False if mode == "bilinear" else None)


def pool_to(x: Tensor, factor: int, ref: Tensor, kind: str = "max") -> Tensor:
    """Pool by `factor` (ceil mode) to the exact size of `ref`."""
    size = [ref.shape[-2], ref.shape[-1]]
    if kind == "max":
        y = F.max_pool2d(x, factor, factor, 0, 1, True)
        return y if list(y.shape[-2:]) == size else F.adaptive_max_pool2d(x, size)
    y = F.avg_pool2d(x, factor, factor, 0, True)
    return y if list(y.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)


def conv_down(conv: nn.Module, x: Tensor, factor: int, ref: Tensor) -> Tensor:
    """A stride-2 conv, then max-pool for the rest of `factor`, to the exact size of `ref`."""
    y = conv(x)
    if factor > 2:
        return pool_to(y, factor // 2, ref)
    size = [ref.shape[-2], ref.shape[-1]]
    return y if list(y.shape[-2:]) == size else F.adaptive_max_pool2d(y, size)
'''


class _Writer:
    """Collects constructor expressions for modules and the op classes they need."""

    def __init__(self):
        self.classes: list[type] = []

    def need(self, cls: type) -> None:
        if cls not in self.classes:
            for dep in _DEPENDS.get(cls, ()):
                self.need(dep)
            self.classes.append(cls)

    def expr(self, m: nn.Module, width: str = "width", first_in: str | None = None) -> str:
        """Python that builds a module like `m`; the neck width appears as the name `width`, and
        the first conv's input width as `first_in` when given (a backbone width)."""
        self._first_in = first_in
        return self._expr(m, width)

    def _expr(self, m: nn.Module, width: str) -> str:
        def c(n: int) -> str:
            return width if n == self.channels else str(n)

        if isinstance(m, nn.Sequential) and type(m) is nn.Sequential:
            return "nn.Sequential(" + ", ".join(self._expr(x, width) for x in m) + ")"
        if isinstance(m, nn.Conv2d):
            cin = c(m.in_channels)
            if self._first_in is not None:
                cin, self._first_in = self._first_in, None
            args = [cin, c(m.out_channels), str(m.kernel_size[0])]
            for key, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
                value = getattr(m, key)
                value = value[0] if isinstance(value, tuple) else value
                if value != default:
                    args.append(f"{key}={c(value) if key == 'groups' else value}")
            if m.bias is None:
                args.append("bias=False")
            return f"nn.Conv2d({', '.join(args)})"
        if isinstance(m, nn.BatchNorm2d):
            if self._first_in is not None:  # a norm before the first conv sees the backbone width
                return f"nn.BatchNorm2d({self._first_in})"
            return f"nn.BatchNorm2d({c(m.num_features)})"
        if isinstance(m, nn.GroupNorm):
            return f"nn.GroupNorm({m.num_groups}, {c(m.num_channels)})"
        if isinstance(m, nn.MaxPool2d):
            return f"nn.MaxPool2d({m.kernel_size}, {m.stride}, ceil_mode={m.ceil_mode})"
        simple = {nn.ReLU: "nn.ReLU()", nn.SiLU: "nn.SiLU()", nn.Sigmoid: "nn.Sigmoid()", nn.Identity: "nn.Identity()"}
        if type(m) in simple:
            return simple[type(m)]
        self.need(type(m))
        name = type(m).__name__
        if isinstance(m, post.SeparableConv):
            return f"{name}({c(m[0].in_channels)}, {c(m[1].out_channels)}, bias={m[1].bias is not None})"
        if isinstance(m, fuse.WeightedSum):
            mode = ("channel_" if m.per_channel else "") + ("softmax" if m.softmax else "fast_normalized")
            channels = c(m.weight.shape[1]) if m.per_channel else width
            return f'{name}({m.weight.shape[0]}, {channels}, "{mode}")'
        if isinstance(m, fuse.ChannelAttentionFuse):
            return f"{name}({m.n}, {c(m.squeeze[0].in_channels)}, reduction={m.reduction})"
        if isinstance(m, fuse.SpatialAttentionFuse):
            return f"{name}({m.weights[2].out_channels}, {c(m.weights[2].in_channels)})"
        if isinstance(m, fuse.ConcatConv):
            return f"{name}({m.conv.in_channels // m.conv.out_channels}, {c(m.conv.out_channels)}, bias={m.conv.bias is not None})"
        if isinstance(m, blocks.ResidualAugmentation):
            return f"{name}({c(m.convs[0].in_channels)}, {m.ratios})"
        if isinstance(m, blocks.ScaleWiseAggregation):
            return f"{name}({len(m.reduce)}, {m.reduce[0].in_channels // m.reduce[0].out_channels}, {c(m.reduce[0].out_channels)})"
        if isinstance(m, blocks.ASPP):
            return f"{name}({c(sum(b.out_channels for b in m.branches))}, {[b.dilation[0] for b in m.branches]})"
        if isinstance(m, blocks.GatedFusion):
            return f"{name}({c(m.gate.in_channels)})"
        raise TypeError(f"no exporter for {name}")


_DEPENDS = {fuse.SpatialAttentionFuse: (), blocks.ResidualAugmentation: (fuse.SpatialAttentionFuse,),
            blocks.ScaleWiseAggregation: (blocks.SqueezeExcite,)}


def _feature_names(plan) -> dict[int, str]:
    names = {i: f"p{lv}" for i, lv in enumerate(plan.levels)}
    for p in plan.stem + plan.cell:
        names[p.index] = p.name
    return names


def _edge_code(edge: nn.Module, var: str, ref: str, attr: str) -> str:
    if isinstance(edge, resample.Take):
        return var
    if isinstance(edge, resample.Upsample):
        return f'resize_up({var}, {ref}, "{edge.mode}")'
    if isinstance(edge, resample.PoolDown):
        return f'pool_to({var}, {edge.factor}, {ref}, "{edge.kind}")'
    if isinstance(edge, resample.ConvDown):
        return f"conv_down(self.{attr}, {var}, {edge.rest * 2}, {ref})"
    raise TypeError(type(edge).__name__)


def _node_lines(p: NodePlan, module: NodeModule, names: dict[int, str], w: _Writer, prefix: str,
                mapping: dict[str, str], init: list[str]) -> list[str]:
    """Constructor lines go to `init`; returns the forward line(s) of one node."""
    ref = f"p{p.node.level}"
    ins = []
    for e, ((index, _), edge) in enumerate(zip(p.inputs, module.edges)):
        attr = f"{p.name}_down{e}"
        if isinstance(edge, resample.ConvDown):
            init.append(f"self.{attr} = {w.expr(edge.conv, 'width')}")
            mapping[f"{prefix}.edges.{e}.conv"] = attr
        ins.append(_edge_code(edge, names[index], ref, attr))
    extras = []
    for e, ((index, _), edge) in enumerate(zip(p.unused, module.unused)):
        attr = f"{p.name}_unused_down{e}"
        if isinstance(edge, resample.ConvDown):
            init.append(f"self.{attr} = {w.expr(edge.conv, 'width')}")
            mapping[f"{prefix}.unused.{e}.conv"] = attr
        extras.append(_edge_code(edge, names[index], ref, attr))
    combine = module.combine
    if isinstance(combine, fuse.Sum):
        value = " + ".join(ins) if len(ins) > 1 else ins[0]
    elif isinstance(combine, fuse.GlobalAttention):
        coarse, fine = ins[combine.coarse], ins[1 - combine.coarse]
        value = f"{coarse} + {fine} * torch.sigmoid(torch.amax({coarse}, dim=(2, 3), keepdim=True))"
        if "(" in coarse:  # compute the coarse input once
            init_var = f"{p.name}_coarse"
            return [f"{init_var} = {coarse}",
                    *_finish(p, f"{init_var} + {fine} * torch.sigmoid(torch.amax({init_var}, dim=(2, 3), keepdim=True))",
                             extras, module, w, prefix, mapping, init)]
    elif isinstance(combine, fuse.GlobalAttentionMMDet):
        value = f"{ins[1]} + {ins[0]} * torch.sigmoid({ins[1]}.mean(dim=(2, 3), keepdim=True))"
        if "(" in ins[1]:
            init_var = f"{p.name}_second"
            return [f"{init_var} = {ins[1]}",
                    *_finish(p, f"{init_var} + {ins[0]} * torch.sigmoid({init_var}.mean(dim=(2, 3), keepdim=True))",
                             extras, module, w, prefix, mapping, init)]
    else:
        init.append(f"self.{p.name}_fuse = {w.expr(combine, 'width')}")
        mapping[f"{prefix}.combine"] = f"{p.name}_fuse"
        value = f"self.{p.name}_fuse([{', '.join(ins)}])"
    return _finish(p, value, extras, module, w, prefix, mapping, init)


def _finish(p, value, extras, module, w, prefix, mapping, init) -> list[str]:
    for extra in extras:
        value = f"({value}) + {extra}"
    post_ops = module.post
    if isinstance(post_ops, nn.Sequential) and len(post_ops) == 0:
        return [f"{p.name} = {value}"]
    init.append(f"self.{p.name}_post = {w.expr(post_ops, 'width')}")
    mapping[f"{prefix}.post"] = f"{p.name}_post"
    return [f"{p.name} = self.{p.name}_post({value})"]


def check_class_name(name: str) -> str:
    """The class name of a generated file must be a plain Python identifier (nothing else is
    ever written into the code)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name) or keyword.iskeyword(name):
        raise ValueError(f"class name {name!r} is not a Python identifier (letters, digits and '_', "
                         "not starting with a digit, not a keyword)")
    return name


def standalone_source(neck: Neck, class_name: str = "ExportedNeck") -> str:
    check_class_name(class_name)
    g = neck.genotype
    plan = make_plan(g)
    names = _feature_names(plan)
    w = _Writer()
    w.channels = neck.out_channels
    mapping: dict[str, str] = {}
    graph = neck.graph
    levels = [f"p{lv}" for lv in g.levels]

    # the cell
    cell_init: list[str] = []
    cell_body: list[str] = []
    for j, p in enumerate(plan.cell):
        cell_body += _node_lines(p, graph.cells[0].nodes[j], names, w, f"nodes.{j}", mapping, cell_init)
    outs = ", ".join(names[i] for i in plan.outputs)
    stem_args = ", ".join(levels + [p.name for p in plan.stem])

    # the neck: laterals, extras, stem nodes
    neck_init: list[str] = []
    neck_body: list[str] = []
    top_map: dict[str, str] = {}
    n_in = len(neck.in_channels)
    for i in range(n_in):
        lat = graph.stem.laterals[i]
        name = f"lateral_{levels[i]}"
        if g.stem.lateral_when == "channels_differ":  # identity at equal widths, as compiled
            ops = w.expr(make_ops(g.stem.lateral, neck.out_channels + 1, neck.out_channels),
                         first_in=f"in_channels[{i}]")
            neck_init.append(f"self.{name} = nn.Identity() if in_channels[{i}] == width else {ops}")
        else:
            neck_init.append(f"self.{name} = {w.expr(lat, first_in=f'in_channels[{i}]')}")
        if not isinstance(lat, nn.Identity):
            top_map[f"graph.stem.laterals.{i}"] = name
        neck_body.append(f"{levels[i]} = self.{name}(inputs[{i}])")
    source = "inputs[-1]" if graph.stem.from_input else levels[n_in - 1]
    for k, extra in enumerate(graph.stem.extras):
        name = levels[n_in + k]
        body = w.expr(extra.body, first_in="in_channels[-1]" if k == 0 and graph.stem.from_input else None)
        neck_init.append(f"self.extra_{name} = {body}")
        top_map[f"graph.stem.extras.{k}.body"] = f"extra_{name}"
        neck_body.append(f"{name} = self.extra_{name}({source})")
        source = name
    stem_map: dict[str, str] = {}
    for j, p in enumerate(plan.stem):
        neck_body += _node_lines(p, graph.stem.nodes[j], names, w, f"graph.stem.nodes.{j}", stem_map, neck_init)
    top_map.update(stem_map)
    repeats = len(graph.cells)
    shared = repeats > 1 and graph.cells[0] is graph.cells[1]
    if shared:
        neck_init.append("cell = Cell(width)")
        neck_init.append(f"self.cells = nn.ModuleList([cell] * {repeats})  # one set of weights, stacked")
    else:
        neck_init.append(f"self.cells = nn.ModuleList(Cell(width) for _ in range({repeats}))")
    stem_feats = [p.name for p in plan.stem]
    sfam = g.cell.aggregate == "sfam"
    if sfam:
        neck_body.append("stacks = []")
    neck_body.append("for cell in self.cells:")
    neck_body.append(f"    {', '.join(levels)} = cell({stem_args})")
    if sfam:
        neck_body.append(f"    stacks.append([{', '.join(levels)}])")
        neck_init.append(f"self.sfam = {w.expr(graph.aggregate, 'width')}")
        top_map["graph.aggregate"] = "sfam"
        neck_body.append("return tuple(self.sfam(stacks))")
    else:
        neck_body.append(f"return {', '.join(levels)}")
    feedback_note = ""
    if neck.feedback is not None:
        neck_init.append(f"self.feedback_aspp = {w.expr(neck.feedback.aspp, 'width')}")
        neck_init.append(f"self.feedback_gate = {w.expr(neck.feedback.fuse, 'width')}")
        top_map["feedback.aspp"] = "feedback_aspp"
        top_map["feedback.fuse"] = "feedback_gate"
        feedback_note = (f"\n    Recursive (DetectoRS RFP, {neck.feedback.steps} steps): run it with `run_pyramid(backbone, neck, "
                         "images)`\n    and a backbone that takes `feedback=` (see run_pyramid).")

    op_sources = "\n\n".join(textwrap.dedent(inspect.getsource(cls)) for cls in w.classes)
    op_sources = op_sources.replace("FAST_NORMALIZED_EPS", "1e-4")
    cell_init_code = textwrap.indent("\n".join(cell_init), " " * 8)
    cell_body_code = textwrap.indent("\n".join(cell_body), " " * 8)
    neck_init_code = textwrap.indent("\n".join(neck_init), " " * 8)
    neck_body_code = textwrap.indent("\n".join(neck_body), " " * 8)
    mapping_code = textwrap.indent(",\n".join(f'"{k}": "{v}"' for k, v in top_map.items()), " " * 4)
    cell_mapping_code = textwrap.indent(",\n".join(f'"{k}": "{v}"' for k, v in mapping.items()), " " * 4)
    paper = f"\n{g.paper}\n" if g.paper else ""
    feedback_code = _FEEDBACK if neck.feedback is not None else ""
    return f'''"""{g.name}: a feature-pyramid neck exported by nasfpn (plain PyTorch, no nasfpn import).
{paper}
    neck = {class_name}(in_channels={neck.in_channels}, out_channels={neck.out_channels})
    {", ".join(levels)} = neck([{", ".join(f"c{lv}" for lv in g.levels[:n_in])}])   # finest first
"""

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

{HELPERS}

{op_sources}


class Cell(nn.Module):
    """One stack of the {g.name} cell: {", ".join(levels)}{" + stem features" if stem_feats else ""} in, one map per level out."""

    def __init__(self, width: int):
        super().__init__()
{cell_init_code}

    def forward(self, {stem_args}):
{cell_body_code}
        return {outs}


class {class_name}(nn.Module):
    """{g.name}: levels {levels[0].upper()}..{levels[-1].upper()}, {repeats} stack(s).{feedback_note}"""

    def __init__(self, in_channels={tuple(neck.in_channels)}, out_channels={neck.out_channels}, num_outs={len(levels)}):
        super().__init__()
        if len(in_channels) != {n_in} or num_outs != {len(levels)}:
            raise ValueError("this neck takes {n_in} backbone maps and returns {len(levels)} (num_outs)")
        self.in_channels = list(in_channels)
        self.out_channels = width = out_channels
        self.num_outs = num_outs
{neck_init_code}

    def forward(self, inputs: List[Tensor]):
{neck_body_code}
{feedback_code}

# state_dict keys of the nasfpn-compiled neck -> this module's ("graph.cells.K." -> "cells.K.")
COMPILED_KEYS = {{
{mapping_code}
}}
COMPILED_CELL_KEYS = {{
{cell_mapping_code}
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


_FEEDBACK = '''
    def feedback_signals(self, outs):
        """ASPP of each level the backbone produces: what goes back into it."""
        return [self.feedback_aspp(x) for x in outs[: len(self.in_channels)]]


def run_pyramid(backbone, neck, images):
    """Backbone, neck, then the recursion: the backbone runs again with `feedback=` (one map per
    backbone level, added after the first block of the stage that makes it), the neck again,
    and a learned gate blends each pass into the previous one."""
    outs = neck(backbone(images))
    for _ in range(STEPS - 1):
        new = neck(backbone(images, feedback=neck.feedback_signals(outs)))
        outs = tuple(neck.feedback_gate(a, b) for a, b in zip(new, outs))
    return outs
'''


def write_standalone(neck: Neck, path: str | Path, class_name: str = "ExportedNeck") -> Path:
    source = standalone_source(neck, class_name)
    if neck.feedback is not None:
        source = source.replace("range(STEPS - 1)", f"range({neck.feedback.steps - 1})")
    return write_text(path, re.sub(r"\n{4,}", "\n\n\n", source))
