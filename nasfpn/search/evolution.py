"""Regularized evolution (Real et al., AAAI 2019) as an Optuna sampler.

The first `population` trials are drawn at random. After them, each trial is a child: a
tournament picks `tournament` members of the population at random, the fittest is the parent,
and the child copies the parent's choices except one, picked at random and changed to another
of its options. Choices the parent never made (a mutated `k` of a pick opens new slots) are drawn
at random. The population is the `population` most recent trials that finished (COMPLETE or
PRUNED), in the order Optuna numbered them: a new trial enters it and the oldest leaves,
whatever its score (age-based removal, the "regularized" part). Points told by a warm start
before sampling count as the newest of the first population, not the oldest. With trials running in
parallel, a child is bred from the members that have finished when it is asked.

Fitness is how far a trial got, then its score: a COMPLETE trial beats a PRUNED one, a pruned
one that reached a later rung beats one stopped sooner, and among equals the higher value wins
(the sampler maximizes a single objective). Every draw comes from a generator seeded by the
sampler's seed and the trial's number, so a search, resumed or not, makes the same children
from the same history.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState


def options_of(distribution: BaseDistribution) -> list[Any]:
    """Every value a categorical or integer choice can take."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    raise ValueError(f"evolution mutates categorical and integer choices, not {type(distribution).__name__}")


def fitness(trial: FrozenTrial) -> tuple:
    """(complete, last rung, score): the larger, the fitter."""
    if trial.state == TrialState.COMPLETE:
        return (1, float("inf"), trial.value)
    steps = trial.intermediate_values
    last = max(steps) if steps else -1
    return (0, last, steps[last] if steps else float("-inf"))


@dataclass(frozen=True)
class Plan:
    """What a trial copies: its parent's choices, one of them changed."""

    parent: int                # the parent's trial number
    params: dict[str, Any]     # the parent's choices
    mutated: str               # the choice that differs
    value: Any                 # its new value


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    def __init__(self, population: int = 10, tournament: int = 3, seed: int = 0):
        if not 2 <= tournament <= population:
            raise ValueError(f"evolution needs 2 <= tournament ({tournament}) <= population ({population})")
        self.population = population
        self.tournament = tournament
        self.seed = seed
        self._plans: dict[int, Optional[Plan]] = {}

    def reseed_rng(self) -> None:  # nothing to reseed: every draw is keyed by the trial's number
        pass

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def members(self, study: optuna.Study, before: int) -> list[FrozenTrial]:
        """The population when trial number `before` was asked: the newest finished trials before it."""
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if t.number < before]
        return sorted(done, key=self.age)[-self.population:]

    def age(self, trial: FrozenTrial) -> tuple:
        """Where a trial stands in the population's queue. A point told before sampling
        (`--warm-start`) would be the oldest and leave before the first child is bred; it enters
        as the newest member of the first population instead, so it is a parent candidate for as
        many tournaments as any member."""
        if "warm_start" in trial.user_attrs and trial.number < self.population:
            return (self.population - 0.5, trial.number)
        return (trial.number, 0)

    def plan(self, study: optuna.Study, number: int) -> Optional[Plan]:
        """The parent and the mutation of trial `number`; None for the first `population` trials
        (drawn at random) and while none has finished."""
        if number in self._plans:
            return self._plans[number]
        members = self.members(study, number)
        plan = None
        if number >= self.population and members:
            rng = np.random.default_rng([self.seed, number])
            size = min(self.tournament, len(members))
            picked = [members[i] for i in rng.choice(len(members), size, replace=False)]
            parent = max(picked, key=fitness)
            mutable = sorted(n for n, d in parent.distributions.items() if len(options_of(d)) > 1)
            if mutable:
                name = mutable[int(rng.integers(len(mutable)))]
                others = [o for o in options_of(parent.distributions[name]) if o != parent.params[name]]
                plan = Plan(parent.number, dict(parent.params), name, others[int(rng.integers(len(others)))])
        self._plans[number] = plan
        return plan

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, distribution: BaseDistribution) -> Any:
        plan = self.plan(study, trial.number)
        if plan is not None:
            if param_name == plan.mutated:
                return plan.value
            if param_name in plan.params and plan.params[param_name] in options_of(distribution):
                return plan.params[param_name]
        options = options_of(distribution)  # a new choice, or the random first population
        rng = np.random.default_rng([self.seed, trial.number, zlib.crc32(param_name.encode())])
        return options[int(rng.integers(len(options)))]

    def lineage(self, study: optuna.Study, number: int) -> dict[str, Any]:
        """What trial `number` was bred from, for its user attributes."""
        plan = self.plan(study, number)
        return {} if plan is None else {"parent": plan.parent, "mutated": plan.mutated}

    def after_trial(self, study, trial, state, values) -> None:
        self._plans.pop(trial.number, None)
