"""One Tune trial: train and score a neck (a baseline by name, or a sampled genotype).

Reports once per evaluation point (`rung` 1..evals, `ap_rung` on the first val images) so ASHA
can stop it early, and a final report with every metric (`final: True`). A trial whose
genotype does not build, whose loss goes NaN, or that raises, ends with a final report
`failed: True` and its error: Tune sees it finish, nothing retries it, and the search goes on.
Only infrastructure failures (a lost worker) surface as Tune errors, which Tune retries.
"""

from __future__ import annotations

import os
import platform
import time
import traceback

import torch
from ray import tune

RUNG_IMAGES = 128  # val images scored at intermediate rungs


def _flat(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items() if not isinstance(vv, (dict, list))})
        elif not isinstance(v, list):
            out[k] = v
    return out


def neck_trial(config: dict, prepared=None, settings: dict | None = None) -> None:
    """The function trainable; `prepared` (data, targets, backbone features) comes from the
    object store, shared by every trial."""
    from ..dsl import from_yaml, load
    from ..proxy.train import run_trial

    settings = settings or {}
    torch.set_num_threads(max(1, int(settings.get("threads", 1))))
    where = {"node": platform.node(), "pid": os.getpid()}
    try:
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - informative only
        pass
    evals = prepared.budget.evals
    started = time.time()

    def failed(message: str) -> None:
        # ap_rung NaN: Tune wants the searcher's metric in every result; NaN ranks nowhere in ASHA
        tune.report({"failed": True, "error": message, "final": True, "rung": evals, "ap_rung": float("nan"),
                     "seconds": time.time() - started, **where})

    if "invalid" in config:
        failed(f"invalid genotype: {config['invalid']}")
        return
    try:
        genotype = load(config["neck"]) if config["kind"] == "baseline" else from_yaml(config["genotype"])
        rung = {"k": 0}

        def on_eval(step: int, metrics: dict) -> None:
            rung["k"] += 1
            tune.report({"rung": rung["k"], "ap_rung": metrics["AP"], "step": step, "final": False,
                         "seconds": time.time() - started, **where})

        # Reference trials report only at the end: early stopping never cuts a baseline short.
        metrics = run_trial(genotype, prepared, seed=int(settings.get("seed", 0)),
                            device=settings.get("device", "cpu"), progress=False,
                            on_eval=on_eval if config["kind"] == "search" else None, eval_limit=RUNG_IMAGES)
    except Exception as exc:  # noqa: BLE001 - any failure of the trial is recorded, not raised
        last = traceback.extract_tb(exc.__traceback__)[-1]
        failed(f"{type(exc).__name__}: {exc} ({os.path.basename(last.filename)}:{last.lineno})")
        return
    tune.report({**_flat(metrics), "rung": evals, "ap_rung": metrics.get("AP_rung"), "final": True,
                 "failed": False, "seconds": time.time() - started, **where})
