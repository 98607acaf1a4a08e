"""One Tune trial: train and score a neck (a baseline by name, or a sampled genotype).

Reports once per evaluation point (`rung` 1..evals, `ap_rung` on the first val images) so ASHA
can stop it early, and a final report with every metric (`final: True`). A trial whose
genotype does not build, whose loss goes NaN, or that raises, ends with a final report
`failed: True` and its error: Tune sees it finish, nothing retries it, and the search goes on.
Only infrastructure failures (a lost worker) surface as Tune errors, which Tune retries.
"""

from __future__ import annotations

import itertools
import os
import platform
import time
import traceback
from dataclasses import dataclass, replace

import torch
from ray import tune

from .records import TrialConfig, TrialMetrics, TrialReport

RUNG_IMAGES = 128  # val images scored at intermediate rungs


@dataclass(frozen=True)
class TrialSettings:
    """How every trial of a search trains: torch threads, device, and the seed of its training."""

    threads: int = 1
    device: str = "cpu"
    seed: int = 0


def _flat(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
        elif not isinstance(v, list):
            out[k] = v
    return out


def neck_trial(config: dict, spec=None, settings: TrialSettings | None = None) -> None:
    """The function trainable: `config` is the searcher's TrialConfig as Tune hands it on; `spec`
    (a SessionSpec: data, budget, cache paths) is opened once per worker process, from the caches
    the driver (or another worker of this node) filled."""
    from ..dsl import from_yaml, load
    from ..proxy.session import shared_session
    from ..proxy.train import run_trial

    trial = TrialConfig.from_dict(config)
    settings = settings or TrialSettings()
    torch.set_num_threads(max(1, int(settings.threads)))
    node, pid, node_id = platform.node(), os.getpid(), None
    import ray

    if ray.is_initialized():  # in a Tune worker; never start a Ray from here (ray's auto-init would)
        node_id = ray.get_runtime_context().get_node_id()
    evals = spec.budget.evals
    started = time.time()

    def report(metrics: TrialMetrics, **outcome) -> None:
        tune.report(TrialReport(metrics, seconds=time.time() - started, node=node, pid=pid, node_id=node_id,
                                **outcome).to_dict())

    def failed(message: str) -> None:
        # ap_rung NaN: Tune wants the searcher's metric in every result; NaN ranks nowhere in ASHA
        report(TrialMetrics(rung=evals, ap_rung=float("nan")), final=True, failed=True, error=message)

    if trial.invalid is not None:
        failed(f"invalid genotype: {trial.invalid}")
        return
    try:
        genotype = load(trial.neck) if trial.is_baseline else from_yaml(trial.genotype)
        rungs = itertools.count(1)

        def on_eval(step: int, metrics: dict) -> None:
            report(TrialMetrics(rung=next(rungs), ap_rung=metrics["AP"]), step=step)

        # Reference and promoted trials report only at the end: early stopping never cuts them short.
        session = shared_session(spec, settings.device)
        if trial.is_promoted:  # the longer rung: the same schedule stretched over more steps
            session = replace(session, budget=replace(session.budget, steps=session.budget.steps * trial.steps_factor))
        metrics = run_trial(genotype, session, seed=int(settings.seed), progress=False,
                            on_eval=None if trial.is_baseline or trial.is_promoted else on_eval,
                            eval_limit=RUNG_IMAGES)
    except Exception as exc:  # noqa: BLE001 - any failure of the trial is recorded, not raised
        last = traceback.extract_tb(exc.__traceback__)[-1]
        failed(f"{type(exc).__name__}: {exc} ({os.path.basename(last.filename)}:{last.lineno})")
        return
    flat = _flat(metrics)
    scores = TrialMetrics.from_dict(flat)
    details = {k: v for k, v in flat.items() if k not in TrialMetrics.names()}
    report(replace(scores, rung=evals, ap_rung=scores.AP_rung), final=True, details=details)
