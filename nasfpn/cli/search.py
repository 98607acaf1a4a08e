"""nasfpn search: Ray Tune + Optuna over a DSL search space, hand-designed necks as references."""

from __future__ import annotations

import os
from pathlib import Path

from ..dsl import zoo_names
from .common import UserError, add_budget_options, bounded_int, budget_sets, count, finite_float, seed


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search a DSL space (Ray Tune + Optuna), baselines included",
                       description="Writes runs/NAME/: manifest, Optuna study, trials.jsonl, leaderboard, "
                                   "trials.csv, plots and the best cell. Without --address (or "
                                   "RAY_ADDRESS) it starts an embedded single-node Ray on 127.0.0.1.")
    p.add_argument("--space", help="search-space YAML (e.g. search_spaces/nasfpn_space.yaml)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted search")
    p.add_argument("--trials", type=bounded_int(1), default=40, help="sampled necks to train (default 40)")
    add_budget_options(p)
    p.add_argument("--sampler", default="tpe", help="tpe (default), random, evolution (regularized evolution), nsga2")
    p.add_argument("--objective", default="ap", help="ap (default) or ap,flops")
    p.add_argument("--concurrency", type=bounded_int(1), help="trials at once (default: cluster CPUs / cpus-per-trial)")
    p.add_argument("--cpus-per-trial", type=finite_float(0, positive=True), default=1)
    p.add_argument("--gpus-per-trial", type=finite_float(0), default=0,
                   help="GPUs per trial; a fraction (0.25) lets small trials share one")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else embedded Ray)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite in the run directory), e.g. "
                                     "postgresql://user:pass@host/db; or set $NASFPN_STORAGE, which keeps "
                                     "a password off the command line (--resume needs it again)")
    p.add_argument("--storage-path", help="Tune storage_path for clusters: shared filesystem or s3://")
    p.add_argument("--name", help="run name (default: SPACE-SAMPLER-TIMESTAMP)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--data", default="synthetic", help="synthetic (built in) or coco:DIR")
    p.add_argument("--baselines", default=",".join(zoo_names("genotype")),
                   help="zoo necks scored as reference trials (comma-separated, or 'none')")
    p.add_argument("--seed", type=seed, default=0, help="sampler seed")
    p.add_argument("--trial-seed", type=seed, default=0, help="seed of every trial's training")
    p.add_argument("--backbone-seed", type=seed, default=0)
    p.add_argument("--no-asha", action="store_true", help="train every trial to the end")
    p.add_argument("--promote", type=bounded_int(0), default=3, metavar="K",
                   help="once every sampled trial finished, train the K best that completed every rung again, "
                        "with the best baseline, at --promote-factor times the steps; the leaderboard ranks them "
                        "first by that AP (default 3; 0: none)")
    p.add_argument("--promote-factor", type=bounded_int(2), default=4, metavar="F",
                   help="the longer rung's steps as a multiple of the budget's (default 4)")
    p.add_argument("--cpus", type=bounded_int(1), help="CPUs of the embedded Ray (default: all)")
    p.add_argument("--cache", metavar="DIR", help="backbone/feature cache (default: STORAGE_PATH/cache with "
                                                  "--storage-path on a shared filesystem, else ~/.cache/nasfpn "
                                                  "on each node)")
    p.add_argument("--max-flops", type=count, metavar="N",
                   help="skip sampled necks over N FLOPs (as the leaderboard counts them: batch 1, the budget's "
                        "image size and width; e.g. 0.1G), judged before training")
    p.add_argument("--max-params", type=count, metavar="N", help="skip sampled necks over N parameters (e.g. 0.5M)")
    p.add_argument("--min-tau", type=finite_float(-1), default=0.6,
                   help="warn when the budget's calibration on the data ranks necks below this Kendall tau "
                        "(default 0.6)")
    p.add_argument("--warm-start", action="append", default=[], metavar="zoo|RUN_DIR",
                   help="tell the study what is known before sampling: 'zoo' (the zoo necks that are points of "
                        "the space, trained as baselines) or another search's run directory on the same space, "
                        "budget and data (its trials, not trained again); repeatable")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..export.report import write_report
    from ..search import SearchOptions, run_search
    from ..search.runner import STORAGE_ENV

    if bool(args.space) == bool(args.resume):
        raise UserError("give --space FILE for a new search, or --resume RUN_DIR")
    baselines = [] if args.baselines in ("", "none") else [b.strip() for b in args.baselines.split(",")]
    opts = SearchOptions(space=args.space or "", trials=args.trials, budget=args.budget, sampler=args.sampler,
                         objective=args.objective, concurrency=args.concurrency,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         address=args.address, storage=args.storage or os.environ.get(STORAGE_ENV) or None,
                         storage_path=args.storage_path,
                         name=args.name, runs_dir=args.runs_dir, data=args.data, baselines=baselines,
                         seed=args.seed, trial_seed=args.trial_seed, backbone_seed=args.backbone_seed,
                         asha=not args.no_asha, sets=budget_sets(args), cpus=args.cpus, cache=args.cache,
                         cache_limit_gb=args.cache_limit, workers=args.workers, max_flops=args.max_flops,
                         max_params=args.max_params, min_tau=args.min_tau, warm_start=args.warm_start,
                         promote=args.promote, promote_factor=args.promote_factor,
                         progress=not args.no_progress)
    run_dir, finished = run_search(opts, resume=Path(args.resume) if args.resume else None, report=write_report)
    board = run_dir / "leaderboard.md"
    if board.exists():
        print(board.read_text())
        print(f"wrote {run_dir}/: leaderboard.md, trials.csv, pareto.png, progress.png, best_cell.png, "
              "best_genotype.yaml")
    if not finished:
        print(f"the search stopped before its last trial: continue it with\n  nasfpn search --resume {run_dir}")
        return 130
    if board.exists():
        print(f"next: export the best cell as plain PyTorch with\n"
              f"  nasfpn export {run_dir} --format py --out best_neck.py")
        if opts.budget in ("smoke", "quick"):
            space = args.space or run_dir / "space.yaml"
            print(f"or run a real search at the proxy budget:\n"
                  f"  nasfpn search --space {space} --budget proxy --trials 40")
    return 0
