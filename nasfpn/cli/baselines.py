"""nasfpn baselines: score every zoo neck the same way, over several seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..dsl import load, to_yaml, zoo_names
from ..export.baselines import TABLE_FIELDS
from ..files import output_dir, read_text, write_text
from ..proxy.loop import TrainingDiverged
from .common import UserError, bounded_int, proxy_session, write_json
from .train import add_proxy_options


def add_parser(sub) -> None:
    p = sub.add_parser("baselines", help="score every zoo neck under one budget (mean ± std over seeds)",
                       description="Writes DIR/runs/NECK-sSEED/metrics.json per run (finished runs are "
                                   "kept and skipped when re-run), then table.csv, table.md and "
                                   "ap_vs_flops.png.")
    add_proxy_options(p)
    p.add_argument("--seeds", type=bounded_int(1, 1000), default=3, help="seeds per neck (default 3)")
    p.add_argument("--necks", help="comma-separated zoo names (default: every zoo genotype)")
    p.add_argument("--out", default="runs/baselines", metavar="DIR")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..export.baselines import write_tables
    from ..proxy.precision import resolve
    from ..proxy.train import run_trial

    names = args.necks.split(",") if args.necks else zoo_names("genotype")
    genotypes = [load(n) for n in names]
    out = output_dir(args.out, "--out")
    levels = {g.levels for g in genotypes}
    if len(levels) != 1:
        raise UserError("the necks must share one pyramid to be scored the same way")
    session = proxy_session(args, levels.pop())
    precision = resolve(session.budget.precision, session.device).name
    rows = []
    for g in genotypes:
        for seed in range(args.seeds):
            run_dir = out / "runs" / f"{g.name}-s{seed}"
            done = run_dir / "metrics.json"
            metrics = _finished(done)
            if (metrics is not None and isinstance(metrics.get("budget_config"), dict)
                    # a run from before `precision` existed ran in fp32
                    and {"precision": "fp32", **metrics["budget_config"]} == session.budget.as_dict()
                    and metrics.get("data") == session.data.name and metrics.get("precision", "fp32") == precision
                    and metrics.get("backbone_fingerprint") == session.backbone_fingerprint):
                rows.append(metrics)
                continue
            output_dir(run_dir)
            write_text(run_dir / "genotype.yaml", to_yaml(g))
            try:
                metrics = run_trial(g, session, seed=seed, progress=not args.no_progress)
            except TrainingDiverged as err:  # the table goes on without it; a re-run tries it again
                print(f"warning: {g.name} seed {seed}: {err}; left out of the table", file=sys.stderr)
                continue
            write_json(done, metrics)
            rows.append(metrics)
            print(f"{g.name} seed {seed}: AP {metrics['AP'] * 100:.1f}  ({metrics['train_seconds']:.0f} s)")
    if not rows:
        raise UserError("every run diverged: there is no table to write")
    write_tables(rows, out, f"{session.data.name}, budget {session.budget.name} ({precision}), {args.seeds} seed(s)")
    print(f"wrote {out / 'table.md'}, {out / 'table.csv'}, {out / 'ap_vs_flops.png'}")
    print((out / "table.md").read_text())
    return 0


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
