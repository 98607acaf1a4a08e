"""Train necks over seeds into DIR/runs/NAME-sSEED/, keeping finished runs: what `baselines` and
`confirm` share. A run is reused when its metrics were made with the same budget (a run from
before budgets had `precision` ran in fp32), data, precision and backbone; anything else, or a
damaged file, trains it again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def scored_runs(genotypes: list[Genotype], seeds: int, session, out: Path, progress: bool) -> list[dict]:
    """The metrics of every (genotype, seed) that trained; a diverged run is left out, with a warning."""
    from ..proxy.precision import resolve
    from ..proxy.train import run_trial

    precision = resolve(session.budget.precision, session.device).name
    rows = []
    for g in genotypes:
        for seed in range(seeds):
            run_dir = out / "runs" / f"{g.name}-s{seed}"
            done = run_dir / "metrics.json"
            metrics = _finished(done)
            if (metrics is not None and isinstance(metrics.get("budget_config"), dict)
                    and {"precision": "fp32", **metrics["budget_config"]} == session.budget.as_dict()
                    and metrics.get("data") == session.data.name and metrics.get("precision", "fp32") == precision
                    and metrics.get("backbone_fingerprint") == session.backbone_fingerprint):
                rows.append({"precision": "fp32", **metrics})
                continue
            output_dir(run_dir)
            write_text(run_dir / "genotype.yaml", to_yaml(g))
            try:
                metrics = run_trial(g, session, seed=seed, progress=progress)
            except TrainingDiverged as err:  # the table goes on without it; a re-run tries it again
                print(f"warning: {g.name} seed {seed}: {err}; left out of the table", file=sys.stderr)
                continue
            write_json(done, metrics)
            rows.append(metrics)
            print(f"{g.name} seed {seed}: AP {metrics['AP'] * 100:.1f}  ({metrics['train_seconds']:.0f} s)")
    return rows


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
