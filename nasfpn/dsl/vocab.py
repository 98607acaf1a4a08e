"""The words of the DSL, with the one-line meaning shown in errors.

The op words (combine ops, fusion weightings, resampling, post-ops, extras, named blocks,
aggregations, feedback fusions) are declared by the op registry (`nasfpn.ops`), one entry per op,
which calls `declare` for each when nasfpn is imported: the DSL validates against exactly the ops
the compiler can build, without importing torch. The structural words below are the DSL's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import limits

COMBINE: dict[str, str] = {}
FUSION: dict[str, str] = {}
UPSAMPLE: dict[str, str] = {}
DOWNSAMPLE: dict[str, str] = {}
POST_OPS: dict[str, str] = {}
EXTRA: dict[str, str] = {}
AGGREGATE: dict[str, str] = {}
FEEDBACK_FUSION: dict[str, str] = {}
BLOCKS: dict[str, dict] = {}   # name -> {"params": {param: (PARAM_TYPES key, default, about)}, "about"}
CONV_OPS: set[str] = set()     # post-ops that set the width (a conv); the others keep it

TABLES = {"combine": COMBINE, "fusion": FUSION, "upsample": UPSAMPLE, "downsample": DOWNSAMPLE,
          "post": POST_OPS, "extra": EXTRA, "aggregate": AGGREGATE, "feedback_fusion": FEEDBACK_FUSION,
          "block": BLOCKS}


@dataclass(frozen=True)
class Arity:
    """How many inputs a node using the op may have."""

    low: int = 1
    high: int | None = None

    def problem(self, kind: str, name: str, n: int) -> str | None:
        plural = "input" if self.low == 1 else "inputs"
        if self.low == self.high and n != self.low:
            return f"{kind} '{name}' takes exactly {self.low} {plural}, got {n}"
        if n < self.low:
            return f"{kind} '{name}' needs at least {self.low} {plural}, got {n}"
        if self.high is not None and n > self.high:
            return f"{kind} '{name}' takes at most {self.high} {plural}, got {n}"
        return None


ARITY: dict[tuple[str, str], Arity] = {}


def declare(kind: str, name: str, about: str, arity: Arity = Arity(), role: str | None = None,
            params: dict | None = None) -> None:
    """Make `name` a word of the DSL for ops of `kind` (called by the op registry)."""
    if kind not in TABLES:
        raise ValueError(f"unknown op kind {kind!r} (expected one of {', '.join(TABLES)})")
    if name in TABLES[kind]:
        raise ValueError(f"{kind} op {name!r} is declared twice")
    if kind == "block":
        unknown = [p for p, (kind_, _, _) in (params or {}).items() if kind_ not in PARAM_TYPES]
        if unknown:
            raise ValueError(f"block {name!r}: parameters {unknown} have no type of PARAM_TYPES")
        BLOCKS[name] = {"params": dict(params or {}), "about": about}
    else:
        TABLES[kind][name] = about
    ARITY[(kind, name)] = arity
    if role == "conv":
        CONV_OPS.add(name)


def arity_problem(kind: str, name: str, n: int) -> str | None:
    """The message for a node with `n` inputs using op `name` of `kind`, or None if that is fine."""
    arity = ARITY.get((kind, name))
    return arity.problem(kind, name, n) if arity else None


def _fractions(value) -> str | None:
    if not (isinstance(value, tuple) and value and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in value)):
        return "expected a non-empty list of numbers in (0, 1]"
    if len(value) > limits.MAX_LIST:
        return f"at most {limits.MAX_LIST} entries (MAX_LIST), got {len(value)}"
    return None


# The value types a block parameter may declare: name -> check (the message, or None when fine).
PARAM_TYPES = {"fractions": _fractions}


LATERAL_WHEN = {
    "always": "apply the lateral ops to every backbone map (FPN)",
    "channels_differ": "only where the backbone width differs from `channels` (NAS-FPN, BiFPN)",
}
EXTRA_SOURCE = {
    "input": "the coarsest backbone map (C5)",
    "lateral": "the lateral of the coarsest backbone map (P5)",
}

KINDS = ("genotype", "space")
