"""Search constraints: `--max-flops` and `--max-params` on the neck, judged from the genotype when
it is sampled (proxy/neck_cost.py), so an infeasible point is never trained. An object, not a
closure: Tune pickles the searcher that holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..dsl import Genotype
from ..dsl.budget import Budget


def _short(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


@dataclass(frozen=True)
class NeckLimits:
    budget: Budget
    max_flops: Optional[float] = None
    max_params: Optional[float] = None

    def __call__(self, genotype: Genotype) -> Optional[str]:
        """Why the neck is infeasible, or None when it fits."""
        from ..proxy.neck_cost import trial_neck_cost

        cost = trial_neck_cost(genotype, self.budget)
        over = []
        if self.max_flops is not None and cost["neck_flops"] > self.max_flops:
            over.append(f"neck FLOPs {_short(cost['neck_flops'])} > --max-flops {_short(self.max_flops)}")
        if self.max_params is not None and cost["neck_params"] > self.max_params:
            over.append(f"neck params {_short(cost['neck_params'])} > --max-params {_short(self.max_params)}")
        return "; ".join(over) or None
