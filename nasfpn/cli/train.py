"""nasfpn train: train and score one detector whose neck is a genotype."""

from __future__ import annotations

import json

from ..dsl import SearchSpace, read, to_yaml
from ..files import output_dir, write_text
from ..proxy.evaluate import METRICS
from .common import UserError, add_budget_options, bounded_int, budget_of, proxy_session, seed, write_json


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train and evaluate one detector with the given neck",
                       description="Writes DIR/genotype.yaml first, then DIR/metrics.json (COCO AP, "
                                   "params, FLOPs, latency, timing, budget, seed, versions).")
    p.add_argument("--neck", required=True, metavar="NAME|FILE", help="zoo name or genotype YAML")
    add_proxy_options(p)
    p.add_argument("--seed", type=seed, default=0, help="seed of neck/head init and data order")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(run=run)


def add_proxy_options(p) -> None:
    p.add_argument("--data", default="synthetic", help="synthetic (built in) or coco:DIR")
    add_budget_options(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=bounded_int(1, 4096), help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--backbone-seed", type=seed, default=0,
                   help="seed of the shared pretrained backbone (cached per dataset and seed)")
    p.add_argument("--cache", metavar="DIR", help="cache of backbone weights and features "
                                                  "(default $NASFPN_CACHE or ~/.cache/nasfpn)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..proxy.train import run_trial

    budget = budget_of(args)  # a bad budget is reported before anything is written
    genotype = read(args.neck)
    if isinstance(genotype, SearchSpace):
        raise UserError(f"{args.neck} is a search space: train a genotype (e.g. a point from "
                        "`nasfpn show SPACE --seed N`)")
    out = output_dir(args.out, "--out")
    write_text(out / "genotype.yaml", to_yaml(genotype))
    session = proxy_session(args, genotype.levels, budget)
    metrics = run_trial(genotype, session, seed=args.seed, progress=not args.no_progress)
    write_json(out / "metrics.json", metrics)
    print(json.dumps({k: metrics[k] for k in METRICS}, indent=None))
    print(f"train {metrics['train_seconds']:.1f} s ({metrics['images_per_second']:.0f} img/s); "
          f"neck {metrics['neck_params'] / 1e6:.3f} M params, {metrics['neck_flops'] / 1e9:.3f} GFLOPs; "
          f"wrote {out / 'metrics.json'}")
    return 0
