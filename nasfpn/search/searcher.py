"""The Ray Tune searcher: hand-designed necks first (reference trials), then Optuna over a DSL space.

Why not Ray's OptunaSearch: it pickles the whole study (an SQL engine included) into Tune's
checkpoints, tells Optuna an early-stopped trial COMPLETE with its low-rung score, and knows
nothing of graph identity. This searcher keeps the study in its Optuna storage (SQLite or any
SQLAlchemy URL) and nothing else: a resumed search rebuilds its state from the study and
trials.jsonl (`resume`), never from a pickle.

What Optuna is told:
- a finished trial: COMPLETE with its final AP (and neck FLOPs for `--objective ap,flops`);
- a trial ASHA stopped early: PRUNED, with the AP it reported at each rung as intermediate
  values, so TPE ranks it below every completed trial and among pruned ones by how far it got;
- a trial that failed (genotype does not build, NaN loss, any exception): FAIL;
- a point whose graph equals one already trained (`graph_key`) is not trained again: it gets the
  earlier trial's outcome (or waits for it, if that trial is still running) and is logged in
  duplicates.jsonl;
- a warm-start point (warmstart.py): a trial added to the study with the outcome it had where it
  was trained (a zoo baseline of this run, or a trial of another run).

Once every sampled trial has finished, the best `promote` trials that completed every rung, and
the best baseline beside them, are trained again with `promote_factor` times the steps (the
longer rung; Ray Tune's ASHA only stops trials, it never continues one): promoted.jsonl holds
them and the leaderboard ranks them first, by that AP. Optuna is not told of them: its study
scores one fidelity.

Every finished trial is first appended to trials.jsonl, then told to Optuna: a search killed in
between holds the record, and resuming tells the study from it. A trial the study holds as
RUNNING with no record was interrupted: resuming marks it FAIL and asks for its point again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import optuna
from ray.tune.search import Searcher

from ..compile.plan import graph_key
from ..dsl import DSLError, Genotype, SearchSpace, to_yaml
from .errors import SearchError
from .evolution import RegularizedEvolutionSampler
from .records import COMPLETE, ERROR, FAILED, PRUNED, SEARCH, TrialConfig, TrialMetrics, TrialRecord, TrialReport
from .sampling import make_sampler, sample_genotype
from .store import (
    DUPLICATES,
    INFEASIBLE,
    PROMOTED,
    WARM_START,
    append_line,
    append_trial,
    read_promoted,
    read_trials,
    redact,
)
from .warmstart import WarmPoint


@dataclass(frozen=True)
class Objective:
    """What `--objective` asks Optuna to optimise: which way, and the recorded metric it scores."""

    direction: str
    score: Callable[[TrialMetrics], Optional[float]]


OBJECTIVES = {"ap": Objective("maximize", lambda m: m.AP), "flops": Objective("minimize", lambda m: m.neck_flops)}
MAX_DUPLICATE_ASKS = 50  # asks per suggest before calling the space exhausted
WAIT = object()          # no config yet: promotion waits for the running trials
State = optuna.trial.TrialState


def open_study(storage: str, study_name: str, directions: list[str], where: str) -> optuna.Study:
    """The run's study, created on first use; a storage that cannot be opened is one line."""
    try:
        return optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                   directions=directions)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy, the database drivers and Optuna raise many kinds
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SearchError(f"{where}: cannot open the Optuna study '{study_name}' ({detail[:200]}); "
                          "if the file is damaged, restore it from a copy of the run directory") from None


class NeckSearcher(Searcher):
    def __init__(self, space: SearchSpace, storage: str, study_name: str, sampler: str, seed: int,
                 objectives: list[str], run_dir: str, run_id: str = "", storage_label: Optional[str] = None,
                 constraint: Optional[Callable[[Genotype], Optional[str]]] = None,
                 warm_zoo: Optional[dict[str, dict]] = None, promote: int = 0, promote_factor: int = 4):
        super().__init__(metric="ap_rung", mode="max")
        self.space = space
        self.storage = storage                       # may hold a password: never saved (__getstate__)
        self.study_name = study_name
        self.objectives = objectives
        self.run_dir = Path(run_dir)
        self.run_id = run_id                         # marks the study's trials this run asked for
        self.constraint = constraint                 # genotype -> why it is infeasible, or None
        self.warm_zoo = warm_zoo or {}               # baseline name -> its params, told once trained
        self.promote, self.promote_factor = promote, promote_factor
        self.promotions: Optional[list[TrialConfig]] = None  # decided once every sampled trial finished
        self.pending: set[str] = set()               # Tune trial ids handed a config, not finished
        self.exhausted = False                       # every point asked for was a trained graph or infeasible
        self.queue: list[str] = []                   # baselines still to run
        self.to_sample = 0                           # sampled trials still to hand out
        self.trials: dict[str, TrialConfig] = {}     # Tune trial id -> config we gave it
        self.started: dict[str, float] = {}          # Tune trial id -> when it began running
        self.rungs: dict[str, dict[int, float]] = {}  # Tune trial id -> AP at each rung it reached
        self.outcomes: dict[str, tuple] = {}         # graph key -> (state name, values)
        self.running: dict[str, str] = {}            # graph key -> Tune trial id
        self.waiting: dict[str, list[int]] = {}      # graph key -> Optuna numbers of duplicates
        self.live: dict[int, optuna.Trial] = {}      # Optuna number -> trial asked by this process
        directions = [OBJECTIVES[o].direction for o in objectives]
        self.study = open_study(storage, study_name, directions, storage_label or redact(storage))
        self.study.sampler = make_sampler(sampler, seed, len(directions), history=len(self.study.trials))
        self.told: set[str] = set()                  # warm-start sources the study holds
        for frozen in self.study.get_trials(deepcopy=False, states=(State.COMPLETE, State.PRUNED)):
            if "warm_start" in frozen.user_attrs:  # its graph's outcome is known, resumed or not
                self.told.add(frozen.user_attrs["warm_start"])
                outcome = ("COMPLETE", list(frozen.values)) if frozen.state == State.COMPLETE else ("PRUNED", None)
                self.outcomes[graph_key(self._point(frozen.params, frozen.user_attrs["warm_start"]))] = outcome

    # -- what is left to do, from what the run holds
    def resume(self, records: list[TrialRecord], baselines: list[str], trials: int) -> int:
        """Reconcile the study with the trial records, queue what is left; return how many Tune
        trials that is."""
        self.queue, self.to_sample = work_left(records, baselines, trials)
        self.promotions = None
        searched = [r for r in records if r.kind == SEARCH and r.number is not None]
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for record in searched:
            outcome = _outcome_of(record, self.objectives)
            frozen = by_number.get(record.number)
            if frozen is not None and frozen.state == State.RUNNING:
                self._tell(record.number, *outcome)  # killed between the record and the tell
            if record.key and record.state != ERROR:
                self.outcomes[record.key] = outcome
        for record in records:
            if record.is_baseline and record.name in self.warm_zoo:  # killed before it was told
                self.tell_warm(WarmPoint(f"zoo:{record.name}", self.warm_zoo[record.name], record))
        recorded = {r.number for r in searched}
        for frozen in self.study.get_trials(deepcopy=False, states=(State.RUNNING,)):
            ours = frozen.user_attrs.get("nasfpn_run", self.run_id) == self.run_id
            if ours and frozen.number not in recorded:  # interrupted: its point is tried again first
                self._tell(frozen.number, "FAIL", None)
                self.study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number})
        promoted = read_promoted(self.run_dir)
        # sampling still to do: an upper bound (a search that promotes fewer finishes early)
        longer = (len(promotions_left(records, promoted, self.promote, self.promote_factor))
                  if not (self.queue or self.to_sample) else self.promote + 1)
        return len(self.queue) + self.to_sample + (longer if self.promote else 0)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    # -- Tune asks for a config
    def suggest(self, trial_id: str) -> Optional[dict]:
        if trial_id in self.trials:
            return self.trials[trial_id].to_dict()
        config = self._next_config()
        if config is WAIT:
            return None
        if config is None:
            return Searcher.FINISHED
        self.trials[trial_id] = config
        self.pending.add(trial_id)
        if config.key and not config.is_promoted:
            self.running[config.key] = trial_id
        return config.to_dict()

    def _next_config(self):
        """A baseline, a sampled point, a promotion; WAIT; or None when there is nothing left."""
        if self.queue:
            return TrialConfig.baseline(self.queue.pop(0))
        if self.to_sample > 0 and not self.exhausted:
            config = self._next_sampled()
            if config is not None:
                return config
        if not self.promote:
            return None
        if self.promotions is None:
            if self.pending:
                return WAIT
            self.promotions = promotions_left(read_trials(self.run_dir), read_promoted(self.run_dir),
                                              self.promote, self.promote_factor)
        return self.promotions.pop(0) if self.promotions else None

    def _next_sampled(self) -> Optional[TrialConfig]:
        for _ in range(MAX_DUPLICATE_ASKS):
            trial = self.study.ask()
            trial.set_user_attr("nasfpn_run", self.run_id)
            self.live[trial.number] = trial
            try:
                genotype = sample_genotype(self.space, trial)
            except DSLError as err:
                self.to_sample -= 1
                return TrialConfig.unbuildable(trial.number, dict(trial.params), str(err))
            genotype = replace(genotype, name=f"{self.space.name}-t{trial.number}")
            if isinstance(self.study.sampler, RegularizedEvolutionSampler):
                for name, value in self.study.sampler.lineage(self.study, trial.number).items():
                    trial.set_user_attr(name, value)
            reason = self.constraint(genotype) if self.constraint is not None else None
            if reason is not None:  # never trained; told FAIL so no sampler takes it for a result
                trial.set_user_attr("infeasible", reason)
                self._tell(trial.number, "FAIL", None)
                append_line(self.run_dir / INFEASIBLE, {"number": trial.number, "why": reason,
                                                        "params": dict(trial.params), "time": time.time()})
                continue
            key = graph_key(genotype)
            if key in self.outcomes:
                self._tell(trial.number, *self.outcomes[key])
                self._log_duplicate(trial, key, "reused the outcome of an earlier trial")
                continue
            if key in self.running:
                self.waiting.setdefault(key, []).append(trial.number)
                self._log_duplicate(trial, key, "waits for the running trial with the same graph")
                continue
            self.to_sample -= 1
            return TrialConfig.sampled(trial.number, dict(trial.params), key, to_yaml(genotype))
        self.exhausted = True  # every point asked for is a graph already trained, or infeasible
        return None

    # -- Tune reports
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        config = self.trials.get(trial_id)
        if config is None:
            return
        report = TrialReport.from_dict(result)
        if report.ap_rung is None or report.rung is None:
            return
        self.rungs.setdefault(trial_id, {})[int(report.rung)] = float(report.ap_rung)
        if config.kind != SEARCH or report.final or len(self.objectives) > 1:
            return
        trial = self.live.get(config.number)
        if trial is not None:
            try:
                trial.report(float(report.ap_rung), step=int(report.rung))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        self.pending.discard(trial_id)
        config = self.trials.get(trial_id)
        if config is None or (not error and not result):
            return  # stopped before it ran: not finished, the study keeps it RUNNING for a resume
        record = self._record(trial_id, config, TrialReport.from_dict(result or {}), error)
        if config.is_promoted:
            append_trial(self.run_dir, record, PROMOTED)
            return
        append_trial(self.run_dir, record)
        if config.is_baseline and config.neck in self.warm_zoo:
            self.tell_warm(WarmPoint(f"zoo:{config.neck}", self.warm_zoo[config.neck], record))
        if config.kind != SEARCH:
            return
        outcome = _outcome_of(record, self.objectives)
        self._tell(config.number, *outcome)
        key = config.key
        if key is not None:
            self.running.pop(key, None)
            if not error:  # a lost worker is not the graph's fault
                self.outcomes[key] = outcome
            for number in self.waiting.pop(key, []):
                self._tell(number, *outcome)

    def tell_warm(self, point: WarmPoint) -> None:
        """Add `point` to the study as a finished trial with its record's outcome (once per source;
        a failed one is not told: it says nothing of the point)."""
        state, values = _outcome_of(point.record, self.objectives)
        if point.source in self.told or state == "FAIL":
            return
        fixed = optuna.trial.FixedTrial(point.params)
        genotype = self._point(point.params, point.source, fixed)
        steps = dict(point.record.rungs) if len(self.objectives) == 1 else {}
        # logged first: a kill between the two leaves a line too many, never a told point unlisted
        append_line(self.run_dir / WARM_START, {"source": point.source, "state": state, "values": values,
                                                "params": point.params, "time": time.time()})
        self.study.add_trial(optuna.trial.create_trial(
            params=fixed.params, distributions=fixed.distributions, state=getattr(State, state), values=values,
            intermediate_values=steps, user_attrs={"warm_start": point.source, "nasfpn_run": self.run_id}))
        self.told.add(point.source)
        self.outcomes[graph_key(genotype)] = (state, values)

    def _point(self, params: dict, source: str, fixed: Optional[optuna.trial.FixedTrial] = None) -> Genotype:
        """The genotype at warm-start `params` (asked through `fixed`, if given)."""
        try:
            return sample_genotype(self.space, fixed or optuna.trial.FixedTrial(params))
        except (DSLError, ValueError) as err:  # ValueError: a value the space does not offer
            raise SearchError(f"warm start {source}: not a point of {self.space.name} ({err})") from None

    def _record(self, trial_id: str, config: TrialConfig, report: TrialReport, error: bool) -> TrialRecord:
        if error:
            state, message = ERROR, (f"the trial's worker died (out of memory, or its node was lost); "
                                     f"Tune's error.txt of trial {trial_id} says more")
        elif report.failed or config.invalid is not None:
            state, message = FAILED, report.error or config.invalid
        else:
            state, message = (COMPLETE if report.final else PRUNED), None
        return TrialRecord(trial_id=trial_id, kind=config.kind, name=config.name, state=state,
                           number=config.number, key=config.key, params=config.params, genotype=config.genotype,
                           error=message, metrics=report.metrics, rungs=self._rungs_of(trial_id, report),
                           started=self.started.get(trial_id), ended=time.time(), duration=report.seconds,
                           node=report.node, node_id=report.node_id)

    def _rungs_of(self, trial_id: str, report: TrialReport) -> dict[int, float]:
        """AP at each rung reached; the last one too (Tune does not pass on a result that made
        the scheduler stop the trial)."""
        rungs = dict(self.rungs.get(trial_id, {}))
        if report.rung is not None and report.ap_rung is not None:
            rungs[int(report.rung)] = float(report.ap_rung)
        return rungs

    def _tell(self, number: int, state: str, values: Optional[list[float]]) -> None:
        if state == "COMPLETE":
            self.study.tell(number, values, skip_if_finished=True)
        else:
            self.study.tell(number, state=getattr(State, state), skip_if_finished=True)
        self.live.pop(number, None)

    def _log_duplicate(self, trial: optuna.Trial, key: str, what: str) -> None:
        append_line(self.run_dir / DUPLICATES, {"number": trial.number, "key": key, "what": what,
                                                "params": dict(trial.params), "time": time.time()})

    # -- Tune pickles its searcher into its own files: the study and the storage URL stay out
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("study", "storage", "live")}


def work_left(records: list[TrialRecord], baselines: list[str], trials: int) -> tuple[list[str], int]:
    """The baselines a run still has to train, and how many sampled trials (a baseline whose
    worker died is trained again; a sampled trial is done once Optuna was told its outcome)."""
    done = {r.name for r in records if r.is_baseline and r.state != ERROR}
    searched = sum(r.kind == SEARCH and r.number is not None for r in records)
    return [b for b in baselines if b not in done], max(0, trials - searched)


def promotions_left(records: list[TrialRecord], promoted: list[TrialRecord], promote: int,
                    factor: int) -> list[TrialConfig]:
    """The longer rung's trials still to train: the `promote` best sampled trials that completed
    every rung and the best baseline, less those promoted already (a lost worker's again)."""
    done = {r.name for r in promoted if r.state != ERROR}
    best = sorted((r for r in records if r.has_ap), key=lambda r: -r.ap)
    sampled = [r for r in best if not r.is_baseline][:promote]
    baseline = [r for r in best if r.is_baseline][:1] if sampled else []
    return [TrialConfig.promoted(r, factor) for r in baseline + sampled if r.name not in done]


def _outcome_of(record: TrialRecord, objectives: list[str]) -> tuple:
    """What Optuna is told of a recorded trial."""
    if record.state == PRUNED:
        return ("PRUNED", None)
    values = [OBJECTIVES[o].score(record.metrics) for o in objectives]
    if record.state != COMPLETE or any(v is None for v in values):
        return ("FAIL", None)
    return ("COMPLETE", [float(v) for v in values])
