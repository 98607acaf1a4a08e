"""The sampler side: DSL spaces asked through Optuna trials, and the samplers, pinned."""

from __future__ import annotations

from typing import Any

import optuna

from ..dsl import Genotype, SearchSpace, Suggester
from .evolution import RegularizedEvolutionSampler

SAMPLERS = ("tpe", "random", "evolution", "nsga2")
EVOLUTION_POPULATION, EVOLUTION_TOURNAMENT = 10, 3  # for searches of 40-100 trials


def option_label(option: Any) -> Any:
    """Optuna stores categorical choices of None/bool/int/float/str only: a list-valued option
    (a post-op sequence) is asked by its label, e.g. 'relu+conv3x3+bn'."""
    if isinstance(option, (tuple, list)):
        return "+".join(str(o) for o in option)
    return option


class OptunaSuggester(Suggester):
    """The DSL's Suggester protocol over an optuna Trial (define-by-run)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def categorical(self, name: str, options: list[Any]) -> Any:
        labels = [option_label(o) for o in options]
        chosen = self.trial.suggest_categorical(name, labels)
        return options[labels.index(chosen)]

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.trial.suggest_int(name, low, high, step=step)


def sample_genotype(space: SearchSpace, trial: optuna.Trial) -> Genotype:
    """Define-by-run: cheap (parse and check only, no model is built)."""
    return space.sample(OptunaSuggester(trial))


def make_sampler(name: str, seed: int, objectives: int, history: int = 0) -> optuna.samplers.BaseSampler:
    """Samplers with their settings written out, not left to library defaults (Optuna 5 changed
    TPESampler's): TPE is multivariate with grouping, so conditional parameters (inputs picked
    only for some k) are modelled jointly, and with constant_liar so parallel trials spread out.
    `history` is how many trials the study holds: a resumed TPE or random sampler is seeded past
    them (the first seed would replay the startup points it tried); evolution draws from the seed
    and each trial's number, so it keeps its seed."""
    if name == "evolution":
        if objectives > 1:
            raise ValueError("evolution optimizes one objective: use --objective ap")
        return RegularizedEvolutionSampler(EVOLUTION_POPULATION, EVOLUTION_TOURNAMENT, seed=seed)
    seed += history
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, n_ei_candidates=24,
                                          multivariate=True, group=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        if objectives < 2:
            raise ValueError("nsga2 is a multi-objective sampler: use --objective ap,flops")
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    raise ValueError(f"unknown sampler '{name}' (expected one of {', '.join(SAMPLERS)})")
