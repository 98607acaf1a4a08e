"""The calibration report: how the proxy budget ranks necks against a reference budget on the
user's data, as calibration.csv, calibration.md and calibration.png: Kendall's tau, Spearman's
rho, the top-3 overlap, fpn's seed-to-seed std against the spread of the necks, and the pairs the
proxy orders the other way round."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import pandas as pd

from ..files import atomic_output, output_dir, write_text
from .plots import label_points, new_figure, save_figure
from .ranking import kendall_tau, spearman_rho

TOP = 3


def _seed0(rows: list[dict]) -> dict[str, float]:
    return {r["neck"]: float(r["AP"]) * 100 for r in rows if r["seed"] == 0}


def _top(scores: dict[str, float]) -> set[str]:
    return {n for n, _ in sorted(scores.items(), key=lambda kv: -kv[1])[:TOP]}


def calibration(proxy: list[dict], reference: list[dict]) -> dict:
    """The figures of one calibration: seed 0 of every neck at both budgets; every seed of a neck
    the proxy ran more than once (fpn) for the noise."""
    a, b = _seed0(proxy), _seed0(reference)
    necks = [n for n in a if n in b]
    pa, pb = [a[n] for n in necks], [b[n] for n in necks]
    wrong = [(x, y, b[x] - b[y], a[x] - a[y]) for x, y in itertools.combinations(necks, 2)
             if (a[x] - a[y]) * (b[x] - b[y]) < 0]
    seeds: dict[str, list[float]] = {}
    for r in proxy:
        seeds.setdefault(r["neck"], []).append(float(r["AP"]) * 100)
    noisy = {n: statistics.stdev(v) for n, v in seeds.items() if len(v) > 1}
    return {"necks": necks, "proxy": a, "reference": b,
            "tau": kendall_tau(pa, pb) if len(necks) > 1 else float("nan"),
            "rho": spearman_rho(pa, pb) if len(necks) > 2 else float("nan"),
            "top_overlap": len(_top({n: a[n] for n in necks}) & _top({n: b[n] for n in necks})),
            "wrong": sorted(wrong, key=lambda w: -abs(w[2])), "pairs": len(necks) * (len(necks) - 1) // 2,
            "seed_std": noisy, "spread": statistics.stdev(pa) if len(pa) > 1 else float("nan")}


def write_calibration(c: dict, out: Path, caption: str) -> None:
    output_dir(out)
    frame = pd.DataFrame({"neck": c["necks"], "proxy_AP": [c["proxy"][n] for n in c["necks"]],
                          "reference_AP": [c["reference"][n] for n in c["necks"]]})
    frame["proxy_rank"] = frame["proxy_AP"].rank(ascending=False)
    frame["reference_rank"] = frame["reference_AP"].rank(ascending=False)
    frame = frame.sort_values("reference_AP", ascending=False)
    with atomic_output(out / "calibration.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    noise = "; ".join(f"{n}'s seed std {s:.2f} AP" for n, s in c["seed_std"].items()) or "no neck ran twice"
    lines = [f"Calibration on {caption}.", "",
             f"- {len(c['necks'])} necks: Kendall tau **{c['tau']:.3f}**, Spearman rho {c['rho']:.3f}; "
             f"top-{TOP} overlap {c['top_overlap']} of {TOP}",
             f"- noise: {noise}, against a spread of {c['spread']:.2f} AP (std of the necks' proxy APs)",
             f"- {len(c['wrong'])} of {c['pairs']} pairs ordered the other way round by the proxy"
             + (" (the 10 widest gaps at the reference):" if c["wrong"] else "")]
    lines += [f"  - {x} vs {y}: reference {gap:+.1f}, proxy {pgap:+.1f}" for x, y, gap, pgap in c["wrong"][:10]]
    lines += ["", "| neck | proxy AP | reference AP | proxy rank | reference rank |", "|---|---|---|---|---|"]
    lines += [f"| {r.neck} | {r.proxy_AP:.1f} | {r.reference_AP:.1f} | {r.proxy_rank:g} | {r.reference_rank:g} |"
              for r in frame.itertuples()]
    write_text(out / "calibration.md", "\n".join(lines) + "\n")
    fig, ax = new_figure((6, 5))
    ax.scatter(frame["proxy_AP"], frame["reference_AP"])
    label_points(ax, list(zip(frame["neck"], frame["proxy_AP"], frame["reference_AP"])))
    ax.set_xlabel("proxy AP (%)")
    ax.set_ylabel("reference AP (%)")
    ax.set_title(f"{caption}: Kendall tau {c['tau']:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "calibration.png")
