"""The confirmation report: searched cells and baselines retrained at the reference budget over
several seeds, as confirm.csv and confirm.md. Each searched cell is compared with the best
baseline seed by seed (the same seed gives both the same data order), as a paired difference
with a 95% confidence interval (Student's t), and one sentence says whether the search beat the
hand-designed necks: a cell beats them when its interval lies above zero at no more neck FLOPs
than the best baseline's."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..files import atomic_output, output_dir, write_text
from .baselines import _pm, summarize

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; the normal's beyond
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.960


@dataclass(frozen=True)
class Paired:
    """AP of `cell` minus AP of `baseline`, seed by seed, in AP points."""

    cell: str
    baseline: str
    seeds: int
    mean: float
    low: float                # 95% CI; NaN with fewer than 2 seeds
    high: float


def paired_difference(rows: list[dict], cell: str, baseline: str) -> Optional[Paired]:
    ap = {(r["neck"], r["seed"]): float(r["AP"]) * 100 for r in rows}
    diffs = [ap[(cell, s)] - ap[(baseline, s)] for (n, s) in sorted(ap) if n == cell and (baseline, s) in ap]
    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Paired(cell, baseline, 1, mean, math.nan, math.nan)
    half = t975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Paired(cell, baseline, len(diffs), mean, mean - half, mean + half)


def verdict(pairs: list[Paired], flops: dict[str, float]) -> str:
    """The sentence: did a searched cell beat the best hand-designed neck?"""
    if not pairs:
        return "No searched cell was confirmed: there is nothing to compare."
    base = pairs[0].baseline
    winners = [p for p in pairs if p.low > 0 and flops[p.cell] <= flops[base]]
    best = max(winners or pairs, key=lambda p: p.mean)
    ci = "" if math.isnan(best.low) else f" (95% CI {best.low:+.1f} to {best.high:+.1f}, {best.seeds} seeds)"
    if winners:
        return (f"The search beat the hand-designed necks: {best.cell} scores {best.mean:+.1f} AP over {base}{ci} "
                f"at {flops[best.cell] / flops[base]:.2f}x its neck FLOPs.")
    return (f"The search did not beat the hand-designed necks: its best cell, {best.cell}, scores "
            f"{best.mean:+.1f} AP against {base}{ci} at {flops[best.cell] / flops[base]:.2f}x its neck FLOPs.")


def write_confirmation(rows: list[dict], searched: list[str], baselines: list[str], out: Path, caption: str) -> str:
    """confirm.csv and confirm.md under `out`; returns the verdict."""
    table = summarize(rows)
    done = set(table["neck"])
    kept_baselines = [b for b in baselines if b in done]
    flops = dict(zip(table["neck"], table["neck_flops"].astype(float)))
    best = max(kept_baselines, key=lambda b: float(table.loc[table["neck"] == b, "AP_mean"].iloc[0]), default=None)
    pairs = [p for c in searched if c in done and best is not None
             for p in [paired_difference(rows, c, best)] if p is not None]
    by_cell = {p.cell: p for p in pairs}
    table["kind"] = ["searched" if n in searched else "baseline" for n in table["neck"]]
    table["diff_mean"] = [by_cell[n].mean if n in by_cell else math.nan for n in table["neck"]]
    table["diff_low"] = [by_cell[n].low if n in by_cell else math.nan for n in table["neck"]]
    table["diff_high"] = [by_cell[n].high if n in by_cell else math.nan for n in table["neck"]]
    output_dir(out)
    with atomic_output(out / "confirm.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    sentence = verdict(pairs, flops)
    lines = [f"Confirmation on {caption}; COCO AP (%), mean ± std over seeds.", "", sentence, "",
             f"| neck | kind | AP | AP50 | APs | neck GFLOPs | seeds | Δ {best or 'best baseline'} (95% CI) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        diff = "-"
        if r.neck in by_cell:
            p = by_cell[r.neck]
            diff = f"{p.mean:+.1f}" + ("" if math.isnan(p.low) else f" ({p.low:+.1f} to {p.high:+.1f})")
        lines.append(f"| {r.neck} | {r.kind} | {_pm(r.AP_mean, r.AP_std)} | {_pm(r.AP50_mean, r.AP50_std)} | "
                     f"{_pm(r.APs_mean, r.APs_std)} | {r.neck_flops / 1e9:.3f} | {r.seeds} | {diff} |")
    write_text(out / "confirm.md", "\n".join(lines) + "\n")
    return sentence
