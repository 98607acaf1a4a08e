"""Plots of scored necks (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def ap_vs_flops(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    """One point per neck: mean AP (error bar: std over seeds) against the neck's FLOPs."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = table["neck_flops"] / 1e9
    ax.errorbar(x, table["AP_mean"] * 100, yerr=table["AP_std"].fillna(0) * 100, fmt="o", capsize=3)
    for name, xi, yi in zip(table["neck"], x, table["AP_mean"] * 100):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("neck GFLOPs (log scale)")
    ax.set_ylabel("COCO AP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
