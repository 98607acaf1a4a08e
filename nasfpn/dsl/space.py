"""SearchSpace: a genotype template with choices; a sampled point is exactly a Genotype.

Sampling walks the template in file order and asks a `Suggester` for each choice. Parameter
names are field paths (`cell.nodes[3].combine`) and each name always has the same options, so
Optuna's define-by-run API never sees a "dynamic value space":
- `pick k from a pool` asks `<path>[j]` for an index into the candidates not yet picked
  (the range for slot j is fixed: len(pool) - j);
- a `permutation` asks each node in turn for an index into the levels not yet taken.
Both ask through `Suggester.index`, which sees what each index means (`locate` answers by it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .assemble import assemble
from .choices import Categorical, IntRange, Permutation, Pick
from .errors import DSLError, Problem, line_of
from .schema import Genotype, level_name


class Suggester:
    """Answers the choices of one walk over a space, each asked by its parameter name."""

    def categorical(self, name: str, options: list[Any]) -> Any:
        raise NotImplementedError

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        raise NotImplementedError

    def index(self, name: str, items: list[Any]) -> int:
        """One of `items` by its position: an integer choice 0..len(items) - 1 to a sampler."""
        return self.integer(name, 0, len(items) - 1)


class RandomSuggester(Suggester):
    """Uniform sampling; records what it chose in `params`."""

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def categorical(self, name: str, options: list[Any]) -> Any:
        self.params[name] = value = self.rng.choice(options)
        return value

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        self.params[name] = value = self.rng.randrange(low, high + 1, step)
        return value


@dataclass
class _Walk:
    suggest: Suggester
    permutations: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def resolve(self, value: Any, path: str) -> Any:
        if isinstance(value, Categorical):
            return self.suggest.categorical(path, list(value.options))
        if isinstance(value, IntRange):
            return self.suggest.integer(path, value.low, value.high, value.step)
        return value

    def level(self, value: Any, path: str) -> Any:
        if isinstance(value, Permutation):
            free = self.permutations.setdefault(value.levels, list(value.levels))
            index = self.suggest.index(path, free)
            return int(free.pop(index)[1:])
        if isinstance(value, Categorical):  # ask with level names, so trials read "P4"
            return int(self.suggest.categorical(path, [level_name(v) for v in value.options])[1:])
        return self.resolve(value, path)

    def inputs(self, value: Any, path: str, pool: list[str]) -> Any:
        if not isinstance(value, Pick):
            return self.resolve(value, path)
        candidates = list(value.pool) if value.pool is not None else list(pool)
        k = value.k if isinstance(value.k, int) else self.suggest.integer(
            f"{path}.k", value.k.low, value.k.high, value.k.step)
        chosen = []
        for j in range(k):
            # `candidates` has already lost the j earlier picks: the range is 0..len(pool) - 1 - j
            index = self.suggest.index(f"{path}[{j}]", candidates)
            chosen.append(candidates[index])
            candidates = candidates[:index] + candidates[index + 1:]
        return tuple(chosen)


def format_count(n: int) -> str:
    """A point count for people: 2.47e+17, or 'more than 1e300' (past what a float holds)."""
    return "more than 1e300" if n > 10 ** 300 else f"{float(n):.3g}"


class SearchSpace:
    def __init__(self, template: dict, source: str | None = None):
        self.template = template
        self.source = source
        self.name = template.get("name", "space")
        self._check_static()

    # -- sampling
    def sample(self, suggest: Suggester) -> Genotype:
        """Resolve every choice through `suggest`; raise DSLError if the point is not a valid genotype."""
        walk = _Walk(suggest)
        t = self.template
        point = {k: v for k, v in t.items() if k not in ("stem", "cell", "defaults")}
        point["channels"] = walk.resolve(t["channels"], "channels")
        point["defaults"] = {k: walk.resolve(v, f"defaults.{k}") for k, v in t.get("defaults", {}).items()}
        levels = [level_name(lv) for lv in t["levels"]]
        stem_t, cell_t = t.get("stem", {}), t["cell"]
        point["stem"] = {k: walk.resolve(v, f"stem.{k}") for k, v in stem_t.items() if k != "nodes"}
        point["stem"]["nodes"] = self._nodes(walk, stem_t.get("nodes", []), "stem.nodes", levels, "s")
        n_stem = len(stem_t.get("nodes", []))
        point["cell"] = {k: walk.resolve(v, f"cell.{k}") for k, v in cell_t.items() if k != "nodes"}
        point["cell"]["nodes"] = self._nodes(walk, cell_t["nodes"], "cell.nodes",
                                             levels + [f"s{i}" for i in range(n_stem)], "n")
        if "feedback" in t:
            point["feedback"] = {k: walk.resolve(v, f"feedback.{k}") for k, v in t["feedback"].items()}
        return assemble(point, self.source)

    def _nodes(self, walk: _Walk, nodes: list[dict], path: str, base: list[str], prefix: str) -> list[dict]:
        out = []
        for i, node in enumerate(nodes):
            where = f"{path}[{i}]"
            pool = base + [f"{prefix}{j}" for j in range(i)]
            resolved = {}
            for key, value in node.items():
                if key == "level":
                    resolved[key] = walk.level(value, f"{where}.level")
                elif key == "inputs":
                    resolved[key] = walk.inputs(value, f"{where}.inputs", pool)
                else:
                    resolved[key] = walk.resolve(value, f"{where}.{key}")
            out.append(resolved)
        return out

    def random_sample(self, seed: int | None = None) -> Genotype:
        return self.sample(RandomSuggester(seed))

    # -- checks that need the whole space
    def _check_static(self) -> None:
        problems: list[Problem] = []
        levels = [level_name(lv) for lv in self.template["levels"]]
        groups: dict[tuple[str, ...], list[str]] = {}
        n_stem = len(self.template.get("stem", {}).get("nodes", []))
        for section, prefix, base in (("stem", "s", levels),
                                      ("cell", "n", levels + [f"s{i}" for i in range(n_stem)])):
            for i, node in enumerate(self.template.get(section, {}).get("nodes", [])):
                where = f"{section}.nodes[{i}]"
                pool = base + [f"{prefix}{j}" for j in range(i)]
                value = node.get("inputs")
                if isinstance(value, Pick):
                    candidates = list(value.pool) if value.pool is not None else pool
                    for name in candidates:
                        if name not in pool:
                            problems.append(Problem(f"{where}.inputs.from",
                                                    f"'{name}' is not available to this node ({', '.join(pool)})"))
                    k_max = value.k if isinstance(value.k, int) else value.k.high
                    if k_max > len(candidates):
                        problems.append(Problem(f"{where}.inputs.pick",
                                                f"cannot pick {k_max} distinct inputs from {len(candidates)}"))
                if isinstance(node.get("level"), Permutation):
                    groups.setdefault(node["level"].levels, []).append(where)
        for group, members in groups.items():
            if len(members) != len(group):
                problems.append(Problem(f"{members[0]}.level.permutation",
                                        f"{len(members)} node(s) share a permutation of {len(group)} levels "
                                        f"({', '.join(group)}): the counts must match"))
        if problems:
            lines = self.template.get("_lines", {})
            raise DSLError([Problem(p.path, p.message, line_of(p.path, lines)) for p in problems],
                           self.source)
        # Every point must be a genotype: probe the space with a fixed-seed random sample.
        for seed in range(64):
            suggest = RandomSuggester(seed)
            try:
                self.sample(suggest)
            except DSLError as err:
                first = err.problems[0]
                chosen = ", ".join(f"{k}={v}" for k, v in suggest.params.items())
                raise DSLError([Problem(first.path, f"the space can produce an invalid genotype: "
                                        f"{first.message} (for example when {chosen})", first.line)],
                               self.source) from None

    def size(self) -> int:
        """The number of distinct points (choices multiplied out), exactly."""
        total = 1
        for value, pool in self._choices():
            if isinstance(value, Categorical):
                total *= len(value.options)
            elif isinstance(value, IntRange):
                total *= len(value.values())
            elif isinstance(value, Pick):
                n = len(value.pool) if value.pool is not None else pool
                ks = [value.k] if isinstance(value.k, int) else value.k.values()
                total *= sum(math.perm(n, k) for k in ks)
        for levels in {v.levels for v, _ in self._choices() if isinstance(v, Permutation)}:
            total *= math.factorial(len(levels))
        return total

    def _choices(self):
        t = self.template
        yield t["channels"], 0
        yield from ((v, 0) for v in t.get("defaults", {}).values())
        n_levels = len(t["levels"])
        n_stem = len(t.get("stem", {}).get("nodes", []))
        for section, base in (("stem", n_levels), ("cell", n_levels + n_stem)):
            sec = t.get(section, {})
            yield from ((v, 0) for k, v in sec.items() if k != "nodes")
            for i, node in enumerate(sec.get("nodes", [])):
                yield from ((v, base + i) for v in node.values())
        yield from ((v, 0) for v in t.get("feedback", {}).values())
