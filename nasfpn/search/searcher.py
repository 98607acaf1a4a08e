"""The Ray Tune searcher: hand-designed necks first (reference trials), then Optuna over a DSL space.

Why not Ray's OptunaSearch: it pickles the whole study (an SQL engine included) into Tune's
checkpoints, tells Optuna an early-stopped trial COMPLETE with its low-rung score, and knows
nothing of graph identity. This searcher keeps the study in its Optuna storage (SQLite or any
SQLAlchemy URL) and saves only plain bookkeeping, so `--resume` reopens the same study.

What Optuna is told:
- a finished trial: COMPLETE with its final AP (and neck FLOPs for `--objective ap,flops`);
- a trial ASHA stopped early: PRUNED, with the AP it reported at each rung as intermediate
  values, so TPE ranks it below every completed trial and among pruned ones by how far it got;
- a trial that failed (genotype does not build, NaN loss, any exception): FAIL;
- a point whose graph equals one already trained (`graph_key`) is not trained again: it gets the
  earlier trial's outcome (or waits for it, if that trial is still running) and is logged in
  duplicates.jsonl.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import optuna
from ray.tune.search import Searcher

from ..build.plan import graph_key
from ..dsl import DSLError, SearchSpace, to_yaml
from .sampling import make_sampler, sample_genotype

OBJECTIVES = {"ap": ("AP", "maximize"), "flops": ("neck_flops", "minimize")}
MAX_DUPLICATE_ASKS = 50  # asks per suggest before calling the space exhausted


class NeckSearcher(Searcher):
    def __init__(self, space: SearchSpace, storage: str, study_name: str, sampler: str, seed: int,
                 objectives: list[str], baselines: list[str], run_dir: str):
        super().__init__(metric="ap_rung", mode="max")
        self.space = space
        self.storage = storage
        self.study_name = study_name
        self.sampler_name = sampler
        self.seed = seed
        self.objectives = objectives
        self.run_dir = run_dir
        self.queue = list(baselines)
        self.trials: dict[str, dict] = {}          # Tune trial id -> config we gave it
        self.outcomes: dict[str, tuple] = {}       # graph key -> (state name, values)
        self.running: dict[str, str] = {}          # graph key -> Tune trial id
        self.waiting: dict[str, list[int]] = {}    # graph key -> Optuna numbers of duplicates
        self.internal_ids: dict[int, int] = {}     # Optuna number -> storage trial id
        self._study: Optional[optuna.Study] = None

    # -- the study, opened lazily (after a restore too)
    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            directions = [OBJECTIVES[o][1] for o in self.objectives]
            study = optuna.create_study(storage=self.storage, study_name=self.study_name, load_if_exists=True,
                                        directions=directions)
            # A resumed study continues from a sampler seeded past its history: re-seeding with the
            # first seed would replay the startup points it already tried.
            study.sampler = make_sampler(self.sampler_name, self.seed + len(study.trials), len(directions))
            self._study = study
        return self._study

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    # -- Tune asks for a config
    def suggest(self, trial_id: str) -> Optional[dict]:
        if trial_id in self.trials:
            return self.trials[trial_id]
        if self.queue:
            config = {"kind": "baseline", "neck": self.queue.pop(0)}
            self.trials[trial_id] = config
            return config
        for _ in range(MAX_DUPLICATE_ASKS):
            trial = self.study.ask()
            self.internal_ids[trial.number] = trial._trial_id
            try:
                genotype = sample_genotype(self.space, trial)
            except DSLError as err:
                config = {"kind": "search", "number": trial.number, "params": dict(trial.params),
                          "invalid": str(err)}
                self.trials[trial_id] = config
                return config
            genotype = replace(genotype, name=f"{self.space.name}-t{trial.number}")
            key = graph_key(genotype)
            if key in self.outcomes:
                self._tell(trial.number, *self.outcomes[key])
                self._log_duplicate(trial, key, "reused the outcome of an earlier trial")
                continue
            if key in self.running:
                self.waiting.setdefault(key, []).append(trial.number)
                self._log_duplicate(trial, key, "waits for the running trial with the same graph")
                continue
            config = {"kind": "search", "number": trial.number, "params": dict(trial.params),
                      "key": key, "genotype": to_yaml(genotype)}
            self.running[key] = trial_id
            self.trials[trial_id] = config
            return config
        return Searcher.FINISHED  # every point asked for is a graph already trained

    # -- Tune reports
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        config = self.trials.get(trial_id)
        if (config is None or config["kind"] != "search" or result.get("final") or len(self.objectives) > 1
                or result.get("ap_rung") is None):
            return
        trial = optuna.Trial(self.study, self.internal_ids[config["number"]])
        trial.report(float(result["ap_rung"]), step=int(result["rung"]))

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        config = self.trials.get(trial_id)
        if config is None or config["kind"] != "search":
            return
        if error or not result or result.get("failed") or "invalid" in config:
            outcome: tuple = ("FAIL", None)
        elif not result.get("final"):
            outcome = ("PRUNED", None)
        else:
            outcome = ("COMPLETE", [float(result[OBJECTIVES[o][0]]) for o in self.objectives])
        self._tell(config["number"], *outcome)
        key = config.get("key")
        if key is not None:
            self.running.pop(key, None)
            if outcome[0] != "FAIL" or not error:  # a lost worker is not the graph's fault
                self.outcomes[key] = outcome
            for number in self.waiting.pop(key, []):
                self._tell(number, *outcome)

    def _tell(self, number: int, state: str, values: Optional[list[float]]) -> None:
        try:
            if state == "COMPLETE":
                self.study.tell(number, values)
            else:
                self.study.tell(number, state=getattr(optuna.trial.TrialState, state))
        except RuntimeError as exc:  # already finished (e.g. told before an interruption)
            if "finished" not in str(exc):
                raise

    def _log_duplicate(self, trial: optuna.Trial, key: str, what: str) -> None:
        line = {"number": trial.number, "key": key, "what": what, "params": dict(trial.params),
                "time": time.time()}
        with (Path(self.run_dir) / "duplicates.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")

    # -- Tune checkpoints the searcher: plain data only; the study lives in its storage
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_study"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._study = None

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state: dict[str, Any] = pickle.load(f)
        self.__dict__.update(state)
        self._study = None
        # Trials asked but never handed to Tune (the process died in between) would stay RUNNING.
        handed = {c["number"] for c in self.trials.values() if c["kind"] == "search"}
        handed |= {n for ns in self.waiting.values() for n in ns}
        for frozen in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in handed:
                self._tell(frozen.number, "FAIL", None)
