"""nasfpn calibrate: how far the proxy budget ranks necks as the reference budget does, on your data."""

from __future__ import annotations

import dataclasses

from ..dsl import load, load_space, zoo_names
from ..files import output_dir
from .common import UserError, add_cluster_options, bounded_int, budget_of, remote_runs
from .scoring import add_reuse_option, scored_runs, scoring_for, shared_levels
from .train import add_proxy_options


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="rank necks at the proxy budget and at a reference budget: Kendall tau, "
                                         "Spearman rho, top-3 overlap, noise, the pairs it gets wrong",
                       description="Writes OUT/BUDGET/runs/NECK-sSEED/metrics.json per run (finished runs are "
                                   "kept: an interrupted calibration resumes), then calibration.md, .csv, .png.")
    p.add_argument("--reference", default="full", metavar="NAME|FILE", help="the budget to trust (default full)")
    p.add_argument("--reference-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the reference budget (repeatable); the reference scores "
                        "under the proxy's head unless this names a head field, e.g. a retina proxy "
                        "against --reference-set head=fcos")
    p.add_argument("--necks", default="zoo", metavar="SPEC",
                   help="zoo (every zoo genotype), zoo names, and SPACE:K (K points of a search space), "
                        "comma-separated; e.g. zoo,nasfpn_space:4")
    p.add_argument("--noise-seeds", type=bounded_int(2, 100), default=3,
                   help="seeds of fpn at the proxy budget, for its seed-to-seed std (default 3)")
    p.add_argument("--out", default="runs/calibration", metavar="DIR")
    add_proxy_options(p)
    add_cluster_options(p)
    add_reuse_option(p)
    p.set_defaults(run=run)


def necks_of(spec: str) -> list:
    necks = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item == "zoo":
            necks += [load(n) for n in zoo_names("genotype")]
        elif ":" in item:
            space, _, k = item.rpartition(":")
            if not k.isdigit() or int(k) < 1:
                raise UserError(f"--necks {spec}: '{item}' needs a count of points, e.g. nasfpn_space:4")
            s = load_space(space)
            necks += [dataclasses.replace(s.random_sample(i), name=f"{s.name}-{i}") for i in range(int(k))]
        else:
            necks.append(load(item))
    names = [g.name for g in necks]
    return [g for i, g in enumerate(necks) if g.name not in names[:i]]


def reference_budget(name: str, sets: list[str], proxy):
    """The reference budget, scoring under the proxy's head (one head for both rankings) unless
    `sets` names a head field: a cheaper head can be calibrated against the one users train. Named
    apart from the proxy when both come from one preset, as their runs live in OUT/NAME/."""
    from ..dsl.budget import parse_set, read_budget, with_head_of

    flag = "--reference-set"
    reference = with_head_of(read_budget(name, sets, flag), proxy, keep=[parse_set(s, flag)[0] for s in sets])
    return dataclasses.replace(reference, name=f"{reference.name}-reference") if reference.name == proxy.name \
        else reference


def run(args) -> int:
    from ..export.calibration import calibration, write_calibration
    from ..proxy.cache import cache_dir
    from ..proxy.calibrations import record_calibration

    proxy = budget_of(args)
    reference = reference_budget(args.reference, args.reference_set, proxy)
    necks = necks_of(args.necks)
    if len(necks) < 3:
        raise UserError(f"--necks {args.necks}: a ranking needs at least 3 necks, got {len(necks)}")
    level = shared_levels(necks)
    remote = remote_runs(args)
    out = output_dir(args.out, "--out")
    rows = {}
    for budget in (proxy, reference):
        scoring = scoring_for(args, level, budget, remote)
        rows[budget.name] = scored_runs(necks, 1, scoring, out / budget.name, args.reuse)
        if budget is proxy and any(g.name == "fpn" for g in necks):
            noise = scored_runs([load("fpn")], args.noise_seeds, scoring, out / budget.name, args.reuse)
            rows[budget.name] += [r for r in noise if r["seed"] != 0]  # seed 0 is in already
        del scoring  # one session's data and features in memory at a time
    c = calibration(rows[proxy.name], rows[reference.name])
    heads = f" ({proxy.head} head against {reference.head})" if proxy.head != reference.head else ""
    write_calibration(c, out, f"{args.data}, {proxy.name} against {reference.name}{heads}")
    record_calibration(cache_dir(args.cache), args.data, proxy, reference.name,
                       {"tau": c["tau"], "rho": c["rho"], "top_overlap": c["top_overlap"], "necks": len(c["necks"])},
                       out / "calibration.md")
    print((out / "calibration.md").read_text())
    print(f"wrote {out / 'calibration.md'}, {out / 'calibration.csv'}, {out / 'calibration.png'}")
    return 0
