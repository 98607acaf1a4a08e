"""nasfpn confirm: retrain a search's best cells and the best hand-designed necks at the reference
budget over several seeds, and say whether the search beat them."""

from __future__ import annotations

from pathlib import Path

from ..dsl import from_yaml, load
from ..files import output_dir
from .common import UserError, add_cluster_options, bounded_int, budget_of, remote_runs
from .scoring import add_reuse_option, scored_runs, scoring_for, shared_levels
from .train import add_proxy_options


def add_parser(sub) -> None:
    p = sub.add_parser("confirm", help="retrain a search's top cells and the best baselines at the reference "
                                       "budget over seeds: mean ± std, paired differences, a verdict",
                       description="Writes OUT/runs/NECK-sSEED/metrics.json per run (finished runs are kept "
                                   "and skipped when re-run: an interrupted confirm resumes), then "
                                   "confirm.csv and confirm.md.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search's run directory")
    p.add_argument("--top", type=bounded_int(1, 100), default=3, help="searched cells to confirm (default 3)")
    p.add_argument("--baselines", default="best:2", metavar="SPEC",
                   help="best:K (the run's K best baselines) and/or zoo names, comma-separated (default best:2)")
    p.add_argument("--seeds", type=bounded_int(1, 1000), default=3, help="seeds per neck (default 3)")
    p.add_argument("--out", metavar="DIR", help="output directory (default RUN_DIR/confirm)")
    add_proxy_options(p)
    add_cluster_options(p)
    add_reuse_option(p)
    p.set_defaults(run=run, budget="full", data=None)


def _baselines(spec: str, ranked: list[str]) -> list[str]:
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.startswith("best:"):
            k = item[5:]
            if not k.isdigit() or int(k) < 1:
                raise UserError(f"--baselines {spec}: '{item}' needs a count, e.g. best:2")
            picked = ranked[:int(k)]
        else:
            load(item)  # an unknown name is one line naming it
            picked = [item]
        names += [n for n in picked if n not in names]
    return names


def run(args) -> int:
    from ..dsl.budget import budget_from_dict, parse_set, with_head_of
    from ..export.confirm import write_confirmation
    from ..export.report import ranked
    from ..search.store import read_manifest, read_promoted, read_trial_log

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    manifest = read_manifest(run_dir)
    budget = budget_of(args)  # a bad budget is reported before anything trains
    if isinstance(manifest.get("budget"), dict):  # under the search's head, unless --set says otherwise
        budget = with_head_of(budget, budget_from_dict(manifest["budget"], str(run_dir / "manifest.json")),
                              keep=[parse_set(s)[0] for s in args.sets])
    board = ranked(read_trial_log(run_dir).records, read_promoted(run_dir))  # the leaderboard's order
    cells = [from_yaml(r.genotype) for r in [r for r in board if not r.is_baseline][:args.top]]
    if not cells:
        raise UserError(f"{run_dir}: no searched trial finished with an AP: nothing to confirm")
    baselines = _baselines(args.baselines, [r.name for r in board if r.is_baseline])
    necks = cells + [load(b) for b in baselines]
    levels = shared_levels(necks)
    args.data = args.data or manifest["args"].get("data", "synthetic")
    remote = remote_runs(args)
    out = output_dir(args.out or run_dir / "confirm", "--out")
    scoring = scoring_for(args, levels, budget, remote)
    rows = scored_runs(necks, args.seeds, scoring, out, args.reuse)
    if not rows:
        raise UserError("every run diverged: there is nothing to compare")
    write_confirmation(rows, [g.name for g in cells], baselines, out,
                       f"{scoring.data}, budget {budget.name} ({budget.head} head), {args.seeds} seed(s)")
    print((out / "confirm.md").read_text())
    print(f"wrote {out / 'confirm.md'}, {out / 'confirm.csv'}")
    return 0
