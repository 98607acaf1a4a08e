"""Genotype: one fixed neck architecture as plain, frozen data.

Feature names inside a genotype:
  P3..P7  the cell inputs: backbone maps after the stem (or the previous stack's outputs);
  s0, s1  stem nodes, built once before the first stack and visible to every stack;
  n0, n1  cell nodes, numbered in order; a node may use any earlier feature (the pool grows by one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

LEVEL_RE = re.compile(r"^P([1-9])$")
FEATURE_RE = re.compile(r"^(P|s|n)([0-9]+)$")


def level_name(level: int) -> str:
    return f"P{level}"


@dataclass(frozen=True)
class Node:
    """One merge node: resample `inputs` to `level`, combine them, apply `post` in order."""

    level: int
    inputs: tuple[str, ...]
    combine: str = "sum"
    fusion: str = "none"
    upsample: str = "nearest"
    downsample: str = "maxpool"
    post: tuple[str, ...] = ("relu", "conv3x3", "bn")
    output: bool = False
    block: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)


NODE_DEFAULTS = Node(level=0, inputs=())
NODE_FIELDS = ("level", "inputs", "combine", "fusion", "upsample", "downsample", "post", "output",
               "block", "params")
# Fields a `defaults:` block may set (level and inputs are per node).
DEFAULTABLE_FIELDS = ("combine", "fusion", "upsample", "downsample", "post", "output")


@dataclass(frozen=True)
class Stem:
    """How backbone maps become the first stack's P-level inputs, plus nodes built once."""

    lateral: tuple[str, ...] = ("conv1x1",)
    lateral_when: str = "always"
    extra: str = "conv"
    extra_source: str = "input"
    extra_relu: bool = False
    nodes: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Cell:
    nodes: tuple[Node, ...]
    repeats: int = 1
    share_weights: bool = False
    # NAS-FPN: an output node also sums every same-level feature nothing has consumed yet.
    sum_unused: bool = False
    # NAS-FPN space constraints, checked on every genotype that declares them.
    outputs_last: bool = False
    intermediate_not_finest: bool = False
    aggregate: str = "last"


@dataclass(frozen=True)
class Feedback:
    """DetectoRS recursive feature pyramid: ASPP of the outputs fed back into the backbone."""

    steps: int = 2
    aspp_dilations: tuple[int, ...] = (1, 3, 6, 1)
    fusion: str = "gated"


@dataclass(frozen=True)
class Genotype:
    name: str
    levels: tuple[int, ...]
    channels: int
    cell: Cell
    stem: Stem = field(default_factory=Stem)
    feedback: Feedback | None = None
    paper: str = ""
    description: str = ""

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(level_name(lv) for lv in self.levels)

    def outputs(self) -> list[tuple[int, int]]:
        """(level, node index) of the cell's output nodes, finest level first."""
        outs = [(node.level, i) for i, node in enumerate(self.cell.nodes) if node.output]
        return sorted(outs)
