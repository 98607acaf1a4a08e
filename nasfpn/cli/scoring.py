"""Train necks over seeds into DIR/runs/NAME-sSEED/, keeping finished runs: what `baselines`,
`confirm` and `calibrate` share. A run is reused when its metrics were made with the same budget
(a run from before budgets had `precision` ran in fp32), data, precision and backbone; anything
else, or a damaged file, trains it again. `--reuse DIR` looks in other commands' run folders too
(a calibration's reference runs are seeds of a confirmation's baselines), matching the genotype's
text as well, and copies what it finds. The runs left train here one after another, or with
`--address` as Ray tasks on a cluster (search/remote.py), each written as it finishes
(`Scoring`: where, and on what)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..dsl import Genotype, to_yaml
from ..dsl.budget import Budget
from ..export.baselines import TABLE_FIELDS
from ..files import output_dir, read_text, write_text
from ..proxy.loop import TrainingDiverged
from .common import UserError, proxy_session, session_spec, write_json


def shared_levels(genotypes: list[Genotype]) -> tuple[int, ...]:
    """The one pyramid every neck scored together must share (one session, one canvas)."""
    levels = {g.levels for g in genotypes}
    if len(levels) != 1:
        raise UserError("the necks must share one pyramid to be scored the same way")
    return levels.pop()


@dataclass(frozen=True)
class Scoring:
    """Where the runs train and what they train with: the budget, the data's name, the
    pretrained backbone's fingerprint and the precision a run resolves to, and `train`, which
    takes (genotype, seed) pairs and yields (index, outcome) as each finishes (an outcome holds
    `metrics`, or `diverged`, or `error`)."""

    budget: Budget
    data: str
    fingerprint: str
    precision: str
    train: Callable[[list[tuple[Genotype, int]]], Iterator[tuple[int, dict]]]


def scoring_for(args, levels, budget: Budget, remote=None) -> Scoring:
    """Here: a session in this process, the runs one after another. On a cluster (`remote`, a
    RemoteRuns): the driver checks the data, a task with a run's resources prepares the caches,
    and each run is a Ray task."""
    from ..proxy.data import load_data
    from ..proxy.train import run_trial

    if remote is None:
        session = proxy_session(args, levels, budget)

        def here(jobs):
            for index, (g, seed) in enumerate(jobs):
                try:
                    yield index, {"metrics": run_trial(g, session, seed=seed, progress=not args.no_progress)}
                except TrainingDiverged as err:
                    yield index, {"diverged": str(err)}

        return Scoring(budget, session.data.name, session.backbone_fingerprint, session.precision, here)
    spec = session_spec(args, levels, budget)
    data = load_data(spec.data, budget.image_size, budget.train_images, budget.val_images, spec.data_seed, spec.cache)
    prepared = remote.prepare(spec)
    return Scoring(budget, data.name, prepared["fingerprint"], prepared["precision"],
                   lambda jobs: remote.train([(to_yaml(g), seed) for g, seed in jobs], spec))


def add_reuse_option(p) -> None:
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="take finished runs of the same neck, seed and scoring from DIR's run folders "
                        "(DIR/runs/ or DIR/*/runs/, e.g. a calibration's) instead of training them "
                        "again (repeatable)")


def scored_runs(genotypes: list[Genotype], seeds: int, scoring: Scoring, out: Path,
                reuse: list[str] = ()) -> list[dict]:
    """The metrics of every (genotype, seed) that trained, in that order; a run that diverged or
    failed is left out, with a warning (a re-run tries it again)."""
    rows, todo = {}, []
    elsewhere = _reuse_roots(reuse)
    for i, g in enumerate(genotypes):
        for seed in range(seeds):
            metrics = _finished(_run_dir(out, g, seed) / "metrics.json")
            if metrics is None or not _reusable(metrics, scoring):
                metrics = _reused(elsewhere, g, seed, scoring, _run_dir(out, g, seed))
            if metrics is not None:
                rows[i, seed] = {"precision": "fp32", **metrics}
            else:
                todo.append((i, seed))
    for i, seed in todo:
        output_dir(_run_dir(out, genotypes[i], seed))
        write_text(_run_dir(out, genotypes[i], seed) / "genotype.yaml", to_yaml(genotypes[i]))
    for k, outcome in scoring.train([(genotypes[i], seed) for i, seed in todo]):
        i, seed = todo[k]
        g = genotypes[i]
        metrics = outcome.get("metrics")
        if metrics is None:
            why = outcome.get("diverged") or outcome.get("error")
            print(f"warning: {g.name} seed {seed}: {why}; left out of the table", file=sys.stderr)
            continue
        write_json(_run_dir(out, g, seed) / "metrics.json", metrics)
        rows[i, seed] = metrics
        if metrics.get("backbone_fingerprint") != scoring.fingerprint:
            print(f"warning: {g.name} seed {seed} trained on another pretrained backbone than the first node's "
                  "(give --cache a folder every node shares); a re-run trains it again", file=sys.stderr)
        print(f"{g.name} seed {seed}: AP {metrics['AP'] * 100:.1f}  ({metrics['train_seconds']:.0f} s)")
    return [rows[key] for key in sorted(rows)]


def _run_dir(out: Path, g: Genotype, seed: int) -> Path:
    return out / "runs" / f"{g.name}-s{seed}"


def _reuse_roots(reuse: list[str]) -> list[Path]:
    """The folders whose runs/ `--reuse` may take from: each DIR and its subfolders."""
    roots = []
    for d in map(Path, reuse):
        if not d.is_dir():
            raise UserError(f"--reuse {d}: no such directory")
        roots += [d, *sorted(p for p in d.iterdir() if p.is_dir())]
    return roots


def _reused(roots: list[Path], g: Genotype, seed: int, scoring: Scoring, target: Path) -> dict | None:
    """A finished run of this genotype (the same text, not only the name) and seed under the same
    scoring in one of `roots`, copied into `target`; None if there is none."""
    text = to_yaml(g)
    for root in roots:
        source = _run_dir(root, g, seed)
        if source == target or not (source / "genotype.yaml").is_file():
            continue
        try:
            same = read_text(source / "genotype.yaml") == text
        except ValueError:
            continue
        metrics = _finished(source / "metrics.json") if same else None
        if metrics is not None and _reusable(metrics, scoring):
            output_dir(target)
            write_text(target / "genotype.yaml", text)
            write_json(target / "metrics.json", metrics)
            print(f"{g.name} seed {seed}: reused from {source}")
            return metrics
    return None


def _reusable(metrics: dict, scoring: Scoring) -> bool:
    return (isinstance(metrics.get("budget_config"), dict)
            and {"precision": "fp32", **metrics["budget_config"]} == scoring.budget.as_dict()
            and metrics.get("data") == scoring.data
            and metrics.get("precision", "fp32") == scoring.precision
            and metrics.get("backbone_fingerprint") == scoring.fingerprint)


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
