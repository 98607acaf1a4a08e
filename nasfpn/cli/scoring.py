"""Train necks over seeds into DIR/runs/NAME-sSEED/, keeping finished runs: what `baselines`,
`confirm` and `calibrate` share. A run is reused when its metrics were made with the same budget
(a run from before budgets had `precision` ran in fp32), data, precision and backbone; anything
else, or a damaged file, trains it again. The runs left train here one after another, or with
`--address` as Ray tasks on a cluster (search/remote.py), each written as it finishes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator, Optional

from ..dsl import Genotype, to_yaml
from ..export.baselines import TABLE_FIELDS
from ..files import output_dir, read_text, write_text
from ..proxy.loop import TrainingDiverged
from .common import UserError, write_json


def shared_levels(genotypes: list[Genotype]) -> tuple[int, ...]:
    """The one pyramid every neck scored together must share (one session, one canvas)."""
    levels = {g.levels for g in genotypes}
    if len(levels) != 1:
        raise UserError("the necks must share one pyramid to be scored the same way")
    return levels.pop()


def scored_runs(genotypes: list[Genotype], seeds: int, session, out: Path, progress: bool,
                remote=None) -> list[dict]:
    """The metrics of every (genotype, seed) that trained, in that order; a run that diverged or
    failed is left out, with a warning (a re-run tries it again). `remote`: a RemoteRuns."""
    from ..proxy.precision import resolve

    # a cluster's nodes each resolve `auto` for their own device
    precision = resolve(session.budget.precision, session.device).name if remote is None else None
    rows, todo = {}, []
    for i, g in enumerate(genotypes):
        for seed in range(seeds):
            metrics = _finished(_run_dir(out, g, seed) / "metrics.json")
            if metrics is not None and _reusable(metrics, session, precision):
                rows[i, seed] = {"precision": "fp32", **metrics}
            else:
                todo.append((i, seed))
    for i, seed in todo:
        output_dir(_run_dir(out, genotypes[i], seed))
        write_text(_run_dir(out, genotypes[i], seed) / "genotype.yaml", to_yaml(genotypes[i]))
    outcomes = (_here(genotypes, todo, session, progress) if remote is None
                else ((todo[k], outcome) for k, outcome in remote.train(
                    [(to_yaml(genotypes[i]), seed) for i, seed in todo], session.spec)))
    for (i, seed), outcome in outcomes:
        g = genotypes[i]
        metrics = outcome.get("metrics")
        if metrics is None:
            why = outcome.get("diverged") or outcome.get("error")
            print(f"warning: {g.name} seed {seed}: {why}; left out of the table", file=sys.stderr)
            continue
        write_json(_run_dir(out, g, seed) / "metrics.json", metrics)
        rows[i, seed] = metrics
        if metrics.get("backbone_fingerprint") != session.backbone_fingerprint:
            print(f"warning: {g.name} seed {seed} trained on another pretrained backbone than this machine's "
                  "(give --cache a folder every node shares)", file=sys.stderr)
        print(f"{g.name} seed {seed}: AP {metrics['AP'] * 100:.1f}  ({metrics['train_seconds']:.0f} s)")
    return [rows[key] for key in sorted(rows)]


def _run_dir(out: Path, g: Genotype, seed: int) -> Path:
    return out / "runs" / f"{g.name}-s{seed}"


def _reusable(metrics: dict, session, precision: Optional[str]) -> bool:
    return (isinstance(metrics.get("budget_config"), dict)
            and {"precision": "fp32", **metrics["budget_config"]} == session.budget.as_dict()
            and metrics.get("data") == session.data.name
            and (precision is None or metrics.get("precision", "fp32") == precision)
            and metrics.get("backbone_fingerprint") == session.backbone_fingerprint)


def _here(genotypes: list[Genotype], todo: list[tuple[int, int]], session, progress: bool) -> Iterator:
    """The runs in this process, one after another."""
    from ..proxy.train import run_trial

    for i, seed in todo:
        try:
            yield (i, seed), {"metrics": run_trial(genotypes[i], session, seed=seed, progress=progress)}
        except TrainingDiverged as err:
            yield (i, seed), {"diverged": str(err)}


def _finished(path: Path) -> dict | None:
    """The metrics of a finished run, or None (not run, or its file is damaged: run it again)."""
    if not path.exists():
        return None
    try:
        metrics = json.loads(read_text(path))
    except (ValueError, RecursionError) as err:  # FileProblem is a ValueError
        print(f"warning: {path}: unreadable ({err}); running it again", file=sys.stderr)
        return None
    if not isinstance(metrics, dict) or not TABLE_FIELDS <= metrics.keys():
        print(f"warning: {path}: not the metrics of a finished run; running it again", file=sys.stderr)
        return None
    return metrics
