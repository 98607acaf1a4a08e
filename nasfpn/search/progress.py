"""A Tune callback on the driver that shows live progress: trials done / running / failed, the
best AP so far against the best baseline. The searcher records every trial; this callback only
tells it when each one started running (Tune tells callbacks, not searchers)."""

from __future__ import annotations

import math
import time

from ray.tune import Callback
from tqdm import tqdm

from .searcher import trial_name


class SearchProgress(Callback):
    def __init__(self, done: list[dict], total: int, started: dict[str, float], show: bool = True):
        self.started = started
        self.running: set[str] = set()
        self.failed = sum(r["state"] in ("failed", "error") for r in done)
        self.best = {"search": None, "baseline": None}
        for r in done:
            self._update_best(r["kind"], r["state"], (r.get("metrics") or {}).get("AP"), r["name"])
        self.bar = tqdm(total=total, initial=len(done), desc="search", unit="trial", disable=not show,
                        dynamic_ncols=True)
        self._refresh()

    def _update_best(self, kind: str, state: str, ap, name: str) -> None:
        if state != "complete" or ap is None or (isinstance(ap, float) and math.isnan(ap)):
            return
        kind = "baseline" if kind == "baseline" else "search"
        if self.best[kind] is None or ap > self.best[kind][0]:
            self.best[kind] = (ap, name)

    def _refresh(self) -> None:
        def fmt(best):
            return "-" if best is None else f"{best[0] * 100:.1f} ({best[1]})"
        self.bar.set_postfix_str(f"running {len(self.running)}, failed {self.failed} | best AP "
                                 f"{fmt(self.best['search'])} vs best baseline {fmt(self.best['baseline'])}")

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
        result = trial.last_result or {}
        failed = error or bool(result.get("failed"))
        self.failed += failed
        if not failed and result.get("final"):
            self._update_best(trial.config.get("kind"), "complete", result.get("AP"), trial_name(trial.config))
        self.bar.update(1)
        self._refresh()

    def on_experiment_end(self, trials, **info):
        self.bar.close()
