"""Early stopping over a trial's evaluation rungs: asynchronous successive halving (ASHA; Li et
al., MLSys 2020), decided as Ray Tune's ASHAScheduler decides it with a grace period of one rung,
plus what a resumed search needs: the rung scores of the trials a run already holds are counted
from the start, so resuming does not reopen every rung to every trial.

Milestones are the rungs 1, rf, rf^2, ... up to the last; a trial reaching a milestone below the
final rung is stopped when its score is below the (1 - 1/rf) quantile of the scores recorded
there so far.
"""

from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .records import TrialReport


class RungHalving(FIFOScheduler):
    def __init__(self, last_rung: int, reduction_factor: int = 2):
        super().__init__()
        self.last_rung = last_rung
        self.rf = reduction_factor
        count = int(math.log(last_rung) / math.log(reduction_factor) + 1e-9) + 1
        self.milestones = [reduction_factor ** k for k in range(count)]
        self.scores: dict[int, dict[str, float]] = {m: {} for m in self.milestones}

    def seed(self, key: str, rung_scores: dict[int, float]) -> None:
        """Count the rung scores of a trial that finished before this scheduler started."""
        for milestone, value in rung_scores.items():
            if int(milestone) in self.scores and value is not None and not math.isnan(value):
                self.scores[int(milestone)][key] = float(value)

    def decide(self, key: str, rung: int, value: float) -> str:
        """Record `value` at the highest milestone `rung` reached that `key` has no score at yet."""
        for milestone in reversed(self.milestones):
            recorded = self.scores[milestone]
            if rung < milestone or key in recorded:
                continue
            if math.isnan(value):
                return TrialScheduler.CONTINUE
            below = (milestone < self.last_rung and len(recorded) > 0
                     and bool(value < np.percentile(list(recorded.values()), (1 - 1 / self.rf) * 100)))
            recorded[key] = value
            return TrialScheduler.STOP if below else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        report = TrialReport.from_dict(result)
        if report.rung is None or report.ap_rung is None:
            return TrialScheduler.CONTINUE
        return self.decide(trial.trial_id, int(report.rung), float(report.ap_rung))

    def debug_string(self) -> str:
        return "RungHalving: " + ", ".join(f"rung {m}: {len(s)} scores" for m, s in self.scores.items())
