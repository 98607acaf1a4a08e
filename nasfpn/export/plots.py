"""Plots of scored necks.

Figures are `matplotlib.figure.Figure` objects drawn on their own canvas, never through pyplot:
nothing here selects a backend or opens a window, so importing nasfpn leaves a notebook's or an
application's matplotlib set-up as it was.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..files import atomic_output, output_file


def new_figure(figsize: tuple[float, float]):
    """A figure with one axes, outside pyplot's state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save `fig`, whole or not at all (the format from the file's suffix)."""
    out = output_file(path)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=120, format=out.suffix.lstrip(".") or "png")
    return out


def ap_vs_flops(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    """One point per neck: mean AP (error bar: std over seeds) against the neck's FLOPs."""
    fig, ax = new_figure((7, 4.5))
    x = table["neck_flops"] / 1e9
    ax.errorbar(x, table["AP_mean"] * 100, yerr=table["AP_std"].fillna(0) * 100, fmt="o", capsize=3)
    label_points(ax, list(zip(table["neck"], x, table["AP_mean"] * 100)))
    log_x_axis(ax)
    ax.set_xlabel("neck GFLOPs (log scale)")
    ax.set_ylabel("COCO AP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def label_points(ax, points: list[tuple[str, float, float]], color: str | None = None) -> None:
    """Name each (name, x, y) point; names of points that (nearly) coincide on a log-x plot are
    stacked below each other instead of printed on top of each other."""
    placed: list[tuple[float, float]] = []
    for name, x, y in sorted(points, key=lambda p: -p[2]):
        crowd = sum(1 for px, py in placed if abs(px / x - 1) < 0.08 and abs(py - y) < 1.5)
        placed.append((x, y))
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4 - 10 * crowd), fontsize=8, color=color)


def log_x_axis(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap


def merge_close(values: list[tuple[str, float]], gap: float) -> list[tuple[str, float]]:
    """(name, y) pairs closer than `gap` in y become one ("a, b", mean y) label."""
    groups: list[list[tuple[str, float]]] = []
    for name, y in sorted(values, key=lambda v: -v[1]):
        if groups and abs(groups[-1][-1][1] - y) < gap:
            groups[-1].append((name, y))
        else:
            groups.append([(name, y)])
    return [(", ".join(n for n, _ in g), sum(y for _, y in g) / len(g)) for g in groups]
