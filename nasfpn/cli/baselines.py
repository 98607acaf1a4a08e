"""nasfpn baselines: score every zoo neck the same way, over several seeds."""

from __future__ import annotations

from ..dsl import load, zoo_names
from ..files import output_dir
from .common import UserError, add_cluster_options, bounded_int, budget_of, remote_runs
from .scoring import add_reuse_option, scored_runs, scoring_for, shared_levels
from .train import add_proxy_options


def add_parser(sub) -> None:
    p = sub.add_parser("baselines", help="score every zoo neck under one budget (mean ± std over seeds)",
                       description="Writes DIR/runs/NECK-sSEED/metrics.json per run (finished runs are "
                                   "kept and skipped when re-run), then table.csv, table.md and "
                                   "ap_vs_flops.png.")
    add_proxy_options(p)
    add_cluster_options(p)
    add_reuse_option(p)
    p.add_argument("--seeds", type=bounded_int(1, 1000), default=3, help="seeds per neck (default 3)")
    p.add_argument("--necks", help="comma-separated zoo names (default: every zoo genotype)")
    p.add_argument("--out", default="runs/baselines", metavar="DIR")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..export.baselines import write_tables

    names = args.necks.split(",") if args.necks else zoo_names("genotype")
    genotypes = [load(n) for n in names]
    remote = remote_runs(args)
    out = output_dir(args.out, "--out")
    scoring = scoring_for(args, shared_levels(genotypes), budget_of(args), remote)
    rows = scored_runs(genotypes, args.seeds, scoring, out, args.reuse)
    if not rows:
        raise UserError("every run diverged: there is no table to write")
    write_tables(rows, out, f"{scoring.data}, budget {scoring.budget.name} ({scoring.precision}, "
                            f"{scoring.budget.head} head), {args.seeds} seed(s)")
    print(f"wrote {out / 'table.md'}, {out / 'table.csv'}, {out / 'ap_vs_flops.png'}")
    print((out / "table.md").read_text())
    return 0

