"""The choice markers that turn a genotype into a search space.

  {choice: [a, b, c]}                  one of the options
  {range: [lo, hi], step: s}           an integer lo..hi (inclusive) in steps of s
  {pick: k, from: [P3, n0, ...]}       k distinct inputs from the pool (`from` omitted: the whole pool);
                                       k may itself be a range: {pick: {range: [2, 3]}}
  {permutation: [P3, P4, P5, P6, P7]}  node levels: every node marked with the same list takes a
                                       different level of it (NAS-FPN's output nodes)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MARKERS = ("choice", "range", "pick", "permutation")


@dataclass(frozen=True)
class Categorical:
    options: tuple[Any, ...]


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class Pick:
    k: int | IntRange
    pool: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Permutation:
    levels: tuple[str, ...]


Choice = (Categorical, IntRange, Pick, Permutation)


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and any(m in value for m in MARKERS)
