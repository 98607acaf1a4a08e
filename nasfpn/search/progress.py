"""A Tune callback on the driver that shows live progress: trials done / running / failed, the
best AP so far against the best baseline. The searcher records every trial; this callback only
tells it when each one started running (Tune tells callbacks, not searchers)."""

from __future__ import annotations

import math
import time

from ray.tune import Callback
from tqdm import tqdm

from .records import BASELINE, COMPLETE, ERROR, FAILED, SEARCH, TrialConfig, TrialRecord, TrialReport


class SearchProgress(Callback):
    def __init__(self, done: list[TrialRecord], total: int, started: dict[str, float], show: bool = True):
        self.started = started
        self.running: set[str] = set()
        self.failed = sum(r.state in (FAILED, ERROR) for r in done)
        self.best = {SEARCH: None, BASELINE: None}
        for r in done:
            self._update_best(r.kind, r.state, r.metrics.AP, r.name)
        self.bar = tqdm(total=total, initial=len(done), desc="search", unit="trial", disable=not show,
                        dynamic_ncols=True)
        self._refresh()

    def _update_best(self, kind: str, state: str, ap, name: str) -> None:
        if state != COMPLETE or ap is None or (isinstance(ap, float) and math.isnan(ap)):
            return
        kind = BASELINE if kind == BASELINE else SEARCH
        if self.best[kind] is None or ap > self.best[kind][0]:
            self.best[kind] = (ap, name)

    def _refresh(self) -> None:
        def fmt(best):
            return "-" if best is None else f"{best[0] * 100:.1f} ({best[1]})"
        self.bar.set_postfix_str(f"running {len(self.running)}, failed {self.failed} | best AP "
                                 f"{fmt(self.best[SEARCH])} vs best baseline {fmt(self.best[BASELINE])}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finished(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finished(trial, error=True)

    def _finished(self, trial, error: bool) -> None:
        self.running.discard(trial.trial_id)
        report = TrialReport.from_dict(trial.last_result or {})
        failed = error or report.failed
        self.failed += failed
        if not failed and report.final:
            config = TrialConfig.from_dict(trial.config)
            if not config.is_promoted:  # another fidelity: the bar compares the budget's scores
                self._update_best(config.kind, COMPLETE, report.metrics.AP, config.name)
        self.bar.update(1)
        self._refresh()

    def on_experiment_end(self, trials, **info):
        self.bar.close()
