"""Where a genotype lies in a space: the answers to the space's choices that sample exactly that
genotype (the parameters a sampler would have recorded), or None when it is not a point of it.

The walk asks the choices in file order and `_Towards` answers each from the genotype at the same
path: a node's level, its inputs (by the candidate each index means) and ops, a stem, cell or
feedback field. A choice the genotype does not spell out (a `defaults:` entry, which the genotype
folded into its nodes) is tried option by option. The point is found when a walk ends in the
genotype itself, names aside, and the flags that only constrain a space's points (`outputs_last`,
`intermediate_not_finest`) too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Optional

from .errors import DSLError
from .schema import Genotype, level_name
from .space import SearchSpace, Suggester

MAX_WALKS = 4096  # walks tried over the unguided choices before giving up
_NODE_CHOICE = re.compile(r"(stem|cell)\.nodes\[(\d+)\]\.(\w+)(?:\[(\d+)\]|\.(k))?")
_UNSAID = object()


class _Mismatch(Exception):
    """The genotype holds no answer among this choice's options."""


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normal(v) for v in value)
    return value


def _anonymous(g: Genotype) -> Genotype:
    """The genotype as a graph: no names, and none of the flags that only check a space's points."""
    return replace(g, name="", paper="", description="",
                   cell=replace(g.cell, outputs_last=False, intermediate_not_finest=False))


class _Towards(Suggester):
    def __init__(self, target: Genotype, script: tuple[int, ...]):
        self.target = target
        self.script = script               # the option taken at each unguided choice, in order
        self.unguided: list[int] = []      # the option count of each unguided choice met
        self.params: dict[str, Any] = {}

    def _said(self, name: str) -> Any:
        """What the genotype has at the choice `name`; _UNSAID where it does not say."""
        t = self.target
        node_choice = _NODE_CHOICE.fullmatch(name)
        if node_choice:
            section, i, field, j, k = node_choice.groups()
            nodes = getattr(t, section).nodes
            if int(i) >= len(nodes):
                raise _Mismatch(name)
            node = nodes[int(i)]
            if field == "inputs" and k:
                return len(node.inputs)
            if field == "inputs":
                if j is None or int(j) >= len(node.inputs):
                    raise _Mismatch(name)
                return node.inputs[int(j)]
            if field == "level":
                return level_name(node.level)
            return getattr(node, field, _UNSAID)
        if name == "channels":
            return t.channels
        section, _, field = name.partition(".")
        if section == "feedback" and t.feedback is None:
            raise _Mismatch(name)
        if section in ("stem", "cell", "feedback"):
            return getattr(getattr(t, section), field, _UNSAID)
        return _UNSAID

    def _answer(self, name: str, options: list[Any]) -> Any:
        said = self._said(name)
        if said is _UNSAID:
            n = len(self.unguided)
            self.unguided.append(len(options))
            return options[self.script[n] if n < len(self.script) else 0]
        for option in options:
            if _normal(option) == _normal(said):
                return option
        raise _Mismatch(name)

    def categorical(self, name: str, options: list[Any]) -> Any:
        self.params[name] = value = self._answer(name, options)
        return value

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        self.params[name] = value = self._answer(name, list(range(low, high + 1, step)))
        return value

    def index(self, name: str, items: list[Any]) -> int:
        self.params[name] = position = items.index(self._answer(name, items))
        return position


def locate(space: SearchSpace, genotype: Genotype) -> Optional[dict[str, Any]]:
    """The choices (parameter name -> value, as `RandomSuggester.params` records them) at which
    `space` samples `genotype`; None if it is not a point of the space."""
    wanted = _anonymous(genotype)
    todo: list[tuple[int, ...]] = [()]
    for _ in range(MAX_WALKS):
        if not todo:
            return None
        script = todo.pop()
        suggest = _Towards(genotype, script)
        try:
            point = space.sample(suggest)
        except (_Mismatch, DSLError):
            point = None
        if len(script) < len(suggest.unguided):  # branch on the next unguided choice
            todo.extend(script + (v,) for v in reversed(range(suggest.unguided[len(script)])))
        elif point is not None and _anonymous(point) == wanted:
            return suggest.params
    return None
