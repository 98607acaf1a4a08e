"""nasfpn baselines: score every zoo neck the same way, over several seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..dsl import load, to_yaml, zoo_names
from ..files import FileProblem, atomic_output, output_dir, read_text, write_text
from .common import UserError, bounded_int, proxy_session, write_json
from .train import add_proxy_options

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


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
    from ..proxy.train import run_trial

    names = args.necks.split(",") if args.necks else zoo_names("genotype")
    genotypes = [load(n) for n in names]
    out = output_dir(args.out, "--out")
    levels = {g.levels for g in genotypes}
    if len(levels) != 1:
        raise UserError("the necks must share one pyramid to be scored the same way")
    prepared, device = proxy_session(args, levels.pop())
    rows = []
    for g in genotypes:
        for seed in range(args.seeds):
            run_dir = out / "runs" / f"{g.name}-s{seed}"
            done = run_dir / "metrics.json"
            metrics = _finished(done)
            if (metrics is not None and metrics.get("budget_config") == prepared.budget.as_dict()
                    and metrics.get("data") == prepared.data.name):
                rows.append(metrics)
                continue
            output_dir(run_dir)
            write_text(run_dir / "genotype.yaml", to_yaml(g))
            metrics = run_trial(g, prepared, seed=seed, device=device, progress=not args.no_progress)
            write_json(done, metrics)
            rows.append(metrics)
            print(f"{g.name} seed {seed}: AP {metrics['AP'] * 100:.1f}  ({metrics['train_seconds']:.0f} s)")
    write_tables(rows, out, f"{prepared.data.name}, budget {prepared.budget.name}, {args.seeds} seed(s)")
    print(f"wrote {out / 'table.md'}, {out / 'table.csv'}, {out / 'ap_vs_flops.png'}")
    print((out / "table.md").read_text())
    return 0


def _finished(path: Path) -> dict | None:
    """The metrics of a finished run, or None (not run, or its file is damaged: run it again)."""
    if not path.exists():
        return None
    try:
        metrics = json.loads(read_text(path))
    except (FileProblem, ValueError, RecursionError) as err:
        print(f"warning: {path}: unreadable ({err}); running it again")
        return None
    return metrics if isinstance(metrics, dict) else None


def summarize(rows: list[dict]):
    """One row per neck: mean and std over seeds of every metric, costs of the neck."""
    import pandas as pd

    frame = pd.DataFrame([{**{m: r.get(m) for m in METRICS}, "neck": r["neck"], "seed": r["seed"],
                           **{k: r[k] for k in ("neck_params", "neck_flops", "model_params", "model_flops",
                                                "latency_ms", "train_seconds")}} for r in rows])
    frame[list(METRICS)] = frame[list(METRICS)].astype(float)
    grouped = frame.groupby("neck", sort=False)
    table = grouped[["neck_params", "neck_flops", "model_params", "model_flops"]].first()
    for m in METRICS:
        table[f"{m}_mean"] = grouped[m].mean()
        table[f"{m}_std"] = grouped[m].std(ddof=1)
    table["latency_ms"] = grouped["latency_ms"].median()
    table["train_seconds"] = grouped["train_seconds"].mean()
    table["seeds"] = grouped["seed"].count()
    return table.reset_index().sort_values("AP_mean", ascending=False)


def _pm(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean * 100:.1f}" + ("" if std is None or math.isnan(std) else f" ± {std * 100:.1f}")


def write_tables(rows: list[dict], out: Path, caption: str) -> None:
    from ..export.plots import ap_vs_flops

    table = summarize(rows)
    output_dir(out)
    with atomic_output(out / "table.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    lines = [f"COCO AP (%) on {caption}; mean ± std over seeds.", "",
             "| neck | AP | AP50 | AP75 | APs | APm | APl | neck params (M) | neck GFLOPs | latency (ms) | train (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        cells = [_pm(getattr(r, f"{m}_mean"), getattr(r, f"{m}_std")) for m in METRICS]
        lines.append(f"| {r.neck} | " + " | ".join(cells) +
                     f" | {r.neck_params / 1e6:.3f} | {r.neck_flops / 1e9:.3f} | {r.latency_ms:.1f}"
                     f" | {r.train_seconds:.0f} |")
    write_text(out / "table.md", "\n".join(lines) + "\n")
    ap_vs_flops(table, out / "ap_vs_flops.png", f"zoo necks: {caption}")
