"""A Tune callback on the driver: records every finished trial in runs/NAME/trials.jsonl (the
moment it finishes) and shows live progress: trials done / running / failed, best AP so far
against the best baseline."""

from __future__ import annotations

import math
import time
from pathlib import Path

from ray.tune import Callback
from tqdm import tqdm

from .store import append_trial, read_trials

KEPT_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP_rung", "ap_rung", "rung", "neck_params",
                "model_params", "neck_flops", "model_flops", "latency_ms", "train_seconds",
                "images_per_second", "early_stopped")


def trial_name(config: dict) -> str:
    return config["neck"] if config.get("kind") == "baseline" else f"t{config.get('number', '?')}"


class SearchProgress(Callback):
    def __init__(self, run_dir: Path, total: int, show: bool = True):
        self.run_dir = run_dir
        self.started: dict[str, float] = {}
        self.running: set[str] = set()
        done = read_trials(run_dir)
        self.recorded = {r["trial_id"] for r in done}
        self.failed = sum(r["state"] in ("failed", "error") for r in done)
        self.best = {"search": None, "baseline": None}
        for r in done:
            self._update_best(r)
        self.bar = tqdm(total=total, initial=len(done), desc="search", unit="trial", disable=not show,
                        dynamic_ncols=True)
        self._refresh()

    def _update_best(self, record: dict) -> None:
        ap = (record.get("metrics") or {}).get("AP")
        if record["state"] != "complete" or ap is None or (isinstance(ap, float) and math.isnan(ap)):
            return
        kind = "baseline" if record["kind"] == "baseline" else "search"
        if self.best[kind] is None or ap > self.best[kind][0]:
            self.best[kind] = (ap, record["name"])

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
        self._record(trial, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        message = "the trial's worker failed"
        error_file = getattr(trial, "error_file", None)
        if error_file and Path(error_file).exists():
            lines = Path(error_file).read_text().strip().splitlines()
            message = lines[-1] if lines else message
        self._record(trial, error=message)

    def _record(self, trial, error: str | None) -> None:
        self.running.discard(trial.trial_id)
        if trial.trial_id in self.recorded:
            return
        config, result = trial.config, trial.last_result or {}
        if error is not None:
            state = "error"
        elif result.get("failed"):
            state, error = "failed", result.get("error")
        elif result.get("final"):
            state = "complete"
        else:
            state = "pruned"
        record = {
            "trial_id": trial.trial_id, "kind": config.get("kind"), "name": trial_name(config),
            "number": config.get("number"), "key": config.get("key"), "params": config.get("params"),
            "genotype": config.get("genotype"), "state": state, "error": error or config.get("invalid"),
            "metrics": {k: result[k] for k in KEPT_METRICS if k in result},
            "started": self.started.get(trial.trial_id), "ended": time.time(),
            "duration": result.get("seconds"), "node": result.get("node"), "node_id": result.get("node_id"),
        }
        append_trial(self.run_dir, record)
        self.recorded.add(trial.trial_id)
        self.failed += state in ("failed", "error")
        self._update_best(record)
        self.bar.update(1)
        self._refresh()

    def on_experiment_end(self, trials, **info):
        self.bar.close()
