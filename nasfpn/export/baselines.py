"""The baselines report: every zoo neck scored under one budget, mean ± std over seeds, as
table.csv, table.md and ap_vs_flops.png."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..files import atomic_output, output_dir, write_text
from ..proxy.evaluate import METRICS
from .plots import ap_vs_flops

COSTS = ("neck_params", "neck_flops", "model_params", "model_flops", "latency_ms", "train_seconds")
TABLE_FIELDS = frozenset(("neck", "seed", *COSTS))  # what a run's metrics must hold to be tabled


def summarize(rows: list[dict]) -> pd.DataFrame:
    """One row per neck: mean and std over seeds of every metric, costs of the neck."""
    frame = pd.DataFrame([{**{m: r.get(m) for m in METRICS}, "neck": r["neck"], "seed": r["seed"],
                           **{k: r[k] for k in COSTS}} for r in rows])
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
    """table.csv, table.md and ap_vs_flops.png under `out` from the metrics of every run."""
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
