"""How does a neck's proxy AP depend on the proxy's schedule?

Trains each neck on the frozen, cached backbone features (the `proxy` budget) with other
schedules, each a whole run with its own warmup and cosine decay, and prints AP per neck and
schedule next to the neck's `full` AP from proxy_fidelity's CSV. It tells whether a neck the
proxy ranks low is bad or only slow to train, and what a longer proxy would cost.

A schedule is STEPSxBATCH, optionally wWIDTH, e2e and @LR: `1200x16`, `1200x8` (the proxy's images in
twice the updates), `600x16@4e-3`, `2400x16w32` (a quarter of the neck and head convolutions' cost
per step: EcoNAS's trade of width for epochs), `600x16e2e` (the backbone trained too, from its
pretrained weights, as `full` trains it). `--neck-init default` trains the necks from PyTorch's
default init instead of the proxy's pass-through one. Appends each run to
benchmarks/results/proxy_steps.csv (resuming skips runs finished on the same backbone and init)
and writes proxy_steps.{md,png}.

    python benchmarks/proxy_steps.py --threads 1 --necks fpn,bifpn,nasfpn-proxy \
        --schedules 600x16,1200x16,2400x16,1200x8
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import replace
from pathlib import Path

import torch
from proxy_fidelity import append_row, sampled
from proxy_fidelity import load_rows as load_fidelity_rows

import nasfpn
from nasfpn.dsl.budget import NECK_INITS, read_budget, with_fields
from nasfpn.export.ranking import kendall_tau, spearman_rho
from nasfpn.proxy.session import ProxySession
from nasfpn.proxy.train import run_trial

RESULTS = Path(__file__).resolve().parent / "results"
E2E = "e2e"  # schedule suffix: train the backbone too (from the pretrained weights, as `full` does)
FIELDS = ["neck", "schedule", "steps", "batch", "width", "lr", "seed", "AP", "train_seconds", "backbone", "neck_init"]


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{**r, "steps": int(r["steps"]), "batch": int(r["batch"]), "width": int(r["width"]),
                 "lr": float(r["lr"]),
                 "seed": int(r["seed"]), "AP": float(r["AP"]), "train_seconds": float(r["train_seconds"]),
                 "neck_init": r.get("neck_init") or "default"}
                for r in csv.DictReader(f)]


def full_ap(fidelity_csv: Path, backbone: str) -> dict[str, float]:
    """Each neck's `full` AP (seed 0) from proxy_fidelity's CSV: on this backbone where it ran on
    it, else on another."""
    rows = [r for r in load_fidelity_rows(fidelity_csv) if r["budget"] == "full" and r["seed"] == 0]
    rows.sort(key=lambda r: r["backbone"] == backbone)  # this backbone's rows last: they win
    return {r["neck"]: r["AP"] for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--necks", default="fpn,bifpn,nasfpn-proxy",
                        help="comma-separated zoo names, files, or SPACE-SEED (a sample of a zoo space, "
                             "as proxy_fidelity.py names them)")
    parser.add_argument("--schedules", default="600x16,1200x16,2400x16,1200x8",
                        help="comma-separated STEPSxBATCH[wWIDTH][e2e][@LR]")
    parser.add_argument("--neck-init", choices=NECK_INITS,
                        help="the neck's init (default: the proxy's, see nasfpn/proxy/init.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--fidelity-csv", default=str(RESULTS / "proxy_fidelity.csv"))
    parser.add_argument("--out", default=str(RESULTS / "proxy_steps"))
    args = parser.parse_args()
    try:
        schedules = [parse_schedule(s) for s in args.schedules.split(",")]
    except ValueError:
        parser.error(f"--schedules: expected comma-separated STEPSxBATCH[wWIDTH][e2e][@LR] such as 1200x8, "
                     f"got {args.schedules!r}")
    try:
        genotypes = [resolve(n) for n in args.necks.split(",")]
    except nasfpn.DSLError as e:
        parser.error(f"--necks: {e}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")

    budget = read_budget("proxy", [f"neck_init={args.neck_init}"])
    session = ProxySession.open("synthetic", budget, cache=args.cache, progress=False)
    done = {(r["neck"], r["schedule"], r["seed"], r["backbone"], r["neck_init"]) for r in load_rows(csv_path)}
    for name, steps, batch, width, lr, end_to_end in schedules:
        run = replace(session, budget=with_fields(budget, steps=steps, batch=batch, width=width, lr=lr,
                                                  backbone_mode="train" if end_to_end else "cached"))
        if end_to_end:  # every step runs the backbone on the images
            run = replace(run, train_feats=None, val_feats=None)
        for g in genotypes:
            if (g.name, name, args.seed, session.backbone_fingerprint, budget.neck_init) in done:
                continue
            m = run_trial(g, run, seed=args.seed, progress=False, measure=False)
            append_row(csv_path, {"neck": g.name, "schedule": name, "steps": steps, "batch": batch,
                                  "width": width, "lr": lr,
                                  "seed": args.seed, "AP": m["AP"], "train_seconds": m["train_seconds"],
                                  "backbone": session.backbone_fingerprint, "neck_init": budget.neck_init},
                       FIELDS)
            print(f"{g.name:>16} {name:>12}: AP {m['AP'] * 100:5.1f} ({m['train_seconds']:.0f} s)", flush=True)
    summarize([r for r in load_rows(csv_path) if r["backbone"] == session.backbone_fingerprint
               and r["seed"] == args.seed], full_ap(Path(args.fidelity_csv), session.backbone_fingerprint), out)
    return 0


def resolve(name: str) -> nasfpn.Genotype:
    space, _, seed = name.rpartition("-")
    if seed.isdigit() and space in nasfpn.zoo_names("space"):
        return sampled(space, int(seed))
    return nasfpn.load(name)


def parse_schedule(text: str) -> tuple[str, int, int, int, float, bool]:
    """`2400x16w32e2e@4e-3` -> (its canonical name, steps, batch, width, lr, end to end); the
    proxy's width and lr where none is given, frozen features without `e2e`."""
    proxy = read_budget("proxy")
    rest, _, lr = text.strip().partition("@")
    end_to_end = rest.endswith(E2E)
    rest = rest.removesuffix(E2E)
    rest, _, width = rest.partition("w")
    steps, batch = (int(x) for x in rest.split("x"))
    w, rate = int(width) if width else proxy.width, float(lr) if lr else proxy.lr
    if min(steps, batch, w) <= 0 or rate <= 0:
        raise ValueError(text)
    name = f"{steps}x{batch}" + (f"w{w}" if width else "") + (E2E if end_to_end else "") + (f"@{rate:g}" if lr else "")
    return name, steps, batch, w, rate, end_to_end


def summarize(rows: list[dict], full: dict[str, float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    init = read_budget("proxy").neck_init  # runs at another neck init are labelled with it
    rows = [{**r, "schedule": r["schedule"] + ("" if r["neck_init"] == init else f" ({r['neck_init']} init)")}
            for r in rows]
    scheds = sorted({(r["steps"] * r["batch"], r["width"], r["steps"], r["schedule"]) for r in rows})
    names = [s[-1] for s in scheds]  # by images seen, then width
    necks = list(dict.fromkeys(r["neck"] for r in rows))
    ap = {(r["neck"], r["schedule"]): r["AP"] for r in rows}
    seconds = {(r["neck"], r["schedule"]): r["train_seconds"] for r in rows}
    backbone = rows[0]["backbone"] if rows else "?"
    lines = [f"Proxy AP (%) against the schedule's length, on the frozen cached features of backbone `{backbone}` "
             f"(e2e: the backbone trained too), neck init `{init}` unless marked, "
             f"seed {rows[0]['seed'] if rows else 0} (`python benchmarks/proxy_steps.py`); `full`: 6000 steps "
             "end to end (from proxy_fidelity.csv).", "",
             "Schedules are steps x batch (w: neck and head width, @: learning rate, where not the proxy's 64 "
             f"and 2e-3); the proxy is 600x16 at neck init `{init}`.", "",
             "| neck | " + " | ".join(names) + " | full |",
             "|---|" + "---|" * (len(names) + 1)]
    for n in necks:
        cells = [f"{ap[n, s] * 100:.1f}" if (n, s) in ap else "" for s in names]
        lines.append(f"| {n} | {' | '.join(cells)} | {full[n] * 100:.1f} |" if n in full
                     else f"| {n} | {' | '.join(cells)} | |")
    lines.append("")
    for s in names:
        ns = [n for n in necks if (n, s) in ap and n in full]
        if len(ns) >= 5:  # fewer: a rank correlation says little
            a, b = [ap[n, s] for n in ns], [full[n] for n in ns]
            lines.append(f"- {s} vs full, {len(ns)} necks: Kendall tau **{kendall_tau(a, b):.3f}**, "
                         f"Spearman rho **{spearman_rho(a, b):.3f}**")
    lines += ["", "Training seconds of each run (one thread; other runs shared the machine):", "",
              "| neck | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for n in necks:
        lines.append(f"| {n} | " + " | ".join(f"{seconds[n, s]:.0f}" if (n, s) in seconds else "" for s in names)
                     + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    # a panel per neck init, schedules by images seen; lines for necks with several schedules there
    inits = sorted({r["neck_init"] for r in rows}, key=lambda i: (i != init, i))
    fig, axes = plt.subplots(1, len(inits), figsize=(5 * len(inits) + 1.5, 4.5), squeeze=False, sharey=True)
    colour = {n: plt.get_cmap("tab20")(k % 20) for k, n in enumerate(necks)}
    for ax, i in zip(axes[0], inits):
        mine = [s for s in names if any(r["schedule"] == s and r["neck_init"] == i for r in rows)]
        for n in necks:
            xs = [k for k, s in enumerate(mine) if (n, s) in ap]
            if len(xs) > 1:
                ax.plot(xs, [ap[n, mine[k]] * 100 for k in xs], marker="o", color=colour[n], label=n)
                if n in full:
                    ax.axhline(full[n] * 100, color=colour[n], ls="--", lw=0.8)
            elif xs:
                ax.scatter(xs, [ap[n, mine[xs[0]]] * 100], color=colour[n], s=14, label=n)
        ax.set_xticks(range(len(mine)), [s.split(" (")[0] for s in mine], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"neck init `{i}`", fontsize=9)
        ax.set_xlabel("schedule, steps x batch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AP (%)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="center right")
    fig.suptitle("proxy AP by schedule (dashed: full, 6000 steps end to end)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / (5 * len(inits) + 1.5), 1))
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
