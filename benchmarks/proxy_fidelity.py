"""Does the proxy rank necks the way a longer training does?

For the zoo and random samples of nasfpn_space (and fusion_space): AP under the `proxy` budget
(frozen cached backbone features, short schedule) against AP under `full` (10x the steps, the
backbone trained end to end). Prints Kendall tau and Spearman rho of the two rankings, and the
seed-to-seed std of fpn's proxy AP against the spread of proxy AP across the zoo.

Every finished run is appended to the CSV at once, with the fingerprint of the pretrained
backbone it started from; re-running the script skips the runs finished on the same backbone, so
an interrupted benchmark resumes. Another machine pretrains a numerically different backbone: its
runs are new rows, and the summary compares rankings per backbone and across backbones.
Writes benchmarks/results/proxy_fidelity.{csv,md,png}.

    python benchmarks/proxy_fidelity.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import nasfpn
from nasfpn.dsl.budget import read_budget
from nasfpn.export.ranking import kendall_tau, spearman_rho
from nasfpn.proxy.cost import module_flops
from nasfpn.proxy.data import load_data
from nasfpn.proxy.session import ProxySession
from nasfpn.proxy.train import run_trial

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ["neck", "budget", "seed", "AP", "AP50", "APs", "APm", "APl", "neck_flops", "train_seconds", "backbone",
          "neck_init"]
NUMERIC = FIELDS[3:10]
UNRECORDED = "unrecorded"  # rows from before fingerprints were recorded ("unrecorded-DATE": one session)


def sampled(space: str, seed: int) -> nasfpn.Genotype:
    """Sample `seed` of a zoo search space, named SPACE-SEED."""
    return dataclasses.replace(nasfpn.load_space(space).random_sample(seed), name=f"{space}-{seed}")


def necks(samples: int, fusion_samples: int) -> list[nasfpn.Genotype]:
    return ([nasfpn.load(n) for n in nasfpn.zoo_names("genotype")]
            + [sampled("nasfpn_space", seed) for seed in range(samples)]
            + [sampled("fusion_space", seed) for seed in range(fusion_samples)])


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{**r, "seed": int(r["seed"]), "backbone": r.get("backbone") or UNRECORDED,
                 "neck_init": r.get("neck_init") or "default",
                 **{k: float(r[k]) if r[k] not in ("", "nan") else float("nan") for k in NUMERIC}}
                for r in csv.DictReader(f)]


def append_row(path: Path, row: dict, fields: list[str] = FIELDS) -> None:
    """Reopened per row: runs take minutes, and a file replaced meanwhile (a git checkout, say)
    must still receive every row, not an unlinked copy."""
    new_file = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 0/2, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"K must be in 0..N-1, got {text!r}")
    return k, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3, help="random nasfpn_space necks")
    parser.add_argument("--fusion-samples", type=int, default=2, help="random fusion_space necks")
    parser.add_argument("--fpn-seeds", type=int, default=5, help="proxy seeds of fpn for the seed std")
    parser.add_argument("--budgets", default="proxy,full",
                        help="which runs to do now (full runs do not depend on the proxy's settings)")
    parser.add_argument("--shard", default=(0, 1), type=_shard,
                        help="K/N: do every N-th pending run starting at the K-th, so N processes (e.g. "
                             "one thread each) share the work; they append to the same CSV")
    parser.add_argument("--necks", help="comma-separated neck names: run only these (to balance "
                        "long runs over processes by hand); the summary still covers every row")
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--out", default=str(RESULTS / "proxy_fidelity"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    genotypes = necks(args.samples, args.fusion_samples)
    if args.necks:
        chosen = set(args.necks.split(","))
        unknown = chosen - {g.name for g in genotypes}
        if unknown:
            parser.error(f"--necks: unknown neck(s) {', '.join(sorted(unknown))} "
                         f"(expected some of: {', '.join(g.name for g in genotypes)})")
        genotypes = [g for g in genotypes if g.name in chosen]

    budgets = {name: read_budget(name) for name in ("proxy", "full")}
    # both budgets read the same images: one dataset in memory, a session per budget on it
    data = load_data("synthetic", budgets["proxy"].image_size, budgets["proxy"].train_images,
                     budgets["proxy"].val_images, cache=args.cache)
    wanted = set(args.budgets.split(","))
    sessions = {name: ProxySession.from_data(data, b, cache=args.cache, progress=False)
                for name, b in budgets.items() if name in wanted}
    jobs = []
    for g in genotypes:
        jobs.append((g, "proxy", 0))
        jobs.append((g, "full", 0))
        if g.name == "fpn":
            jobs += [(g, "proxy", s) for s in range(1, args.fpn_seeds)]
    jobs = [j for j in jobs if j[1] in wanted]
    # every proxy run first (they are cheap), then full runs from the cheapest neck up, so that an
    # interrupted run has covered as many necks as its time allowed
    jobs.sort(key=lambda j: (j[1] == "full", _neck_flops(j[0], budgets["proxy"]) if j[1] == "full" else 0))
    # a run is done when it ran on this backbone; rows from another machine's backbone do not count
    # and with the budget's neck init (the proxy's changed; its earlier rows stay for comparison)
    done = {(r["neck"], r["budget"], r["seed"], r["backbone"], r["neck_init"]) for r in load_rows(csv_path)}
    jobs = [j for j in jobs if (j[0].name, j[1], j[2], sessions[j[1]].backbone_fingerprint,
                                sessions[j[1]].budget.neck_init) not in done]
    shard, shards = args.shard
    jobs = jobs[shard::shards]
    print(f"backbone {', '.join(sorted({s.backbone_fingerprint for s in sessions.values()}))}: "
          f"{len(jobs)} runs to do in this process", flush=True)
    for g, budget, seed in jobs:
        start = time.perf_counter()
        m = run_trial(g, sessions[budget], seed=seed, progress=False, measure=False)
        append_row(csv_path, {"neck": g.name, "budget": budget, "seed": seed,
                              **{k: m.get(k) for k in NUMERIC[:5]},
                              "neck_flops": _neck_flops(g, sessions[budget].budget),
                              "train_seconds": m["train_seconds"],
                              "backbone": sessions[budget].backbone_fingerprint,
                              "neck_init": sessions[budget].budget.neck_init})
        print(f"{g.name:>18} {budget:>5} seed {seed}: AP {m['AP'] * 100:5.1f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    summarize(load_rows(csv_path), out)  # every shard's rows, not only this process's
    return 0


def _neck_flops(g, budget) -> float:
    """Neck FLOPs at the proxy's input size and width (proxy backbone widths)."""
    neck = nasfpn.build_neck(g, [64, 128, 256], budget.width)
    xs = [torch.zeros(1, c, math.ceil(budget.image_size / 2 ** lv), math.ceil(budget.image_size / 2 ** lv))
          for c, lv in zip([64, 128, 256], (3, 4, 5))]
    return float(module_flops(neck.graph, xs))


def _by_neck(rows: list[dict], budget: str, backbone: str, neck_init: str) -> dict[str, float]:
    return {r["neck"]: r["AP"] for r in rows if r["budget"] == budget and r["seed"] == 0
            and r["backbone"] == backbone and r["neck_init"] == neck_init}


def summarize(rows: list[dict], out: Path) -> None:
    """Rankings are compared per backbone: the proxy APs of one backbone against full APs, taken
    from the same backbone where that neck has one, else from another. The proxy is today's
    (its neck init); proxy rows of an earlier init are compared too, as the before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proxy_budget, full_budget = read_budget("proxy"), read_budget("full")
    proxy_steps, full_steps, init = proxy_budget.steps, full_budget.steps, proxy_budget.neck_init
    earlier = sorted({r["neck_init"] for r in rows if r["budget"] == "proxy"} - {init})
    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    letter = {b: chr(ord("A") + i) for i, b in enumerate(backbones)}
    proxy = {b: _by_neck(rows, "proxy", b, init) for b in backbones}
    before = {(b, i): _by_neck(rows, "proxy", b, i) for b in backbones for i in earlier}
    full_on = {b: _by_neck(rows, "full", b, full_budget.neck_init) for b in backbones}

    def full_for(backbone: str) -> dict[str, tuple[float, str]]:
        """neck -> (full AP, backbone it ran on), the given backbone first."""
        out_: dict[str, tuple[float, str]] = {}
        for b in [backbone] + [b for b in backbones if b != backbone]:
            for n, ap in full_on[b].items():
                out_.setdefault(n, (ap, b))
        return out_

    compared = [b for b in backbones if len([n for n in proxy[b] if n in full_for(b)]) >= 3]
    if not compared:
        print("fewer than 3 necks with both budgets: nothing to correlate yet")
        return
    main = max(compared, key=lambda b: len([n for n in proxy[b] if n in full_for(b)]))
    full = full_for(main)
    names = sorted((n for n in proxy[main] if n in full), key=lambda n: -full[n][0])

    lines = [
        f"Proxy fidelity on synthetic data, {len(names)} necks with both budgets "
        f"(`python benchmarks/proxy_fidelity.py`; `proxy`: {proxy_steps} steps on frozen cached backbone "
        f"features, neck init `{init}`; `full`: {full_steps} steps end to end, neck init "
        f"`{full_budget.neck_init}`).", "",
        "Runs compare exactly only on one pretrained backbone (fingerprint of its weights; pretraining "
        "is deterministic on one machine, not across machines):", ""]
    for b in backbones:
        what = (f"fingerprint `{b}`" if not b.startswith(UNRECORDED)
                else "not recorded" + (f" (the runs of {b[len(UNRECORDED) + 1:]})" if b != UNRECORDED else ""))
        lines.append(f"- backbone {letter[b]}: {what}; {len(proxy[b])} necks at `proxy`, "
                     f"{len(full_on[b])} at `full`"
                     + "".join(f", {len(before[b, i])} at `proxy` with neck init `{i}`" for i in earlier
                               if before[b, i]))
    lines.append("")
    for b in compared:
        f_b = full_for(b)
        ns = [n for n in proxy[b] if n in f_b]
        same = sum(f_b[n][1] == b for n in ns)
        a, c = [proxy[b][n] for n in ns], [f_b[n][0] for n in ns]
        lines.append(f"- proxy on backbone {letter[b]} vs full, {len(ns)} necks ({same} of the full runs on "
                     f"the same backbone): Kendall tau **{kendall_tau(a, c):.3f}**, Spearman rho "
                     f"**{spearman_rho(a, c):.3f}** (goal tau >= 0.6)")
    for (b, i), old in before.items():  # the same comparison before the proxy's init changed
        f_b = full_for(b)
        ns = [n for n in old if n in f_b]
        if len(ns) >= 3:
            a, c = [old[n] for n in ns], [f_b[n][0] for n in ns]
            lines.append(f"- before: proxy with neck init `{i}` on backbone {letter[b]} vs full, {len(ns)} necks: "
                         f"Kendall tau {kendall_tau(a, c):.3f}, Spearman rho {spearman_rho(a, c):.3f}")
    for b in compared:  # what a search over nasfpn_space compares: cells of one family
        f_b = full_for(b)
        ns = [n for n in proxy[b] if n in f_b and n.startswith("nasfpn")]
        if len(ns) >= 3:
            a, c = [proxy[b][n] for n in ns], [f_b[n][0] for n in ns]
            lines.append(f"- within the NAS-FPN family ({', '.join(ns)}), proxy on backbone {letter[b]} vs full: "
                         f"Kendall tau **{kendall_tau(a, c):.3f}**, Spearman rho **{spearman_rho(a, c):.3f}**")
    for i, b1 in enumerate(backbones):
        for b2 in backbones[i + 1:]:
            ns = [n for n in proxy[b1] if n in proxy[b2]]
            if len(ns) >= 3:
                a, c = [proxy[b1][n] for n in ns], [proxy[b2][n] for n in ns]
                shift = statistics.mean(y - x for x, y in zip(a, c))
                lines.append(f"- proxy on backbone {letter[b1]} vs proxy on {letter[b2]}, {len(ns)} necks: "
                             f"Kendall tau **{kendall_tau(a, c):.3f}**, Spearman rho **{spearman_rho(a, c):.3f}**, "
                             f"mean shift {shift * 100:+.2f} AP points, mean |shift| "
                             f"{statistics.mean(abs(y - x) for x, y in zip(a, c)) * 100:.2f}")
    for i, b1 in enumerate(backbones):
        for b2 in backbones[i + 1:]:
            ns = [n for n in full_on[b1] if n in full_on[b2]]
            if ns:
                lines.append(f"- full on backbone {letter[b1]} vs full on {letter[b2]}: " + ", ".join(
                    f"{n} {full_on[b1][n] * 100:.1f} vs {full_on[b2][n] * 100:.1f}" for n in ns))
    zoo = set(nasfpn.zoo_names("genotype"))
    for b in backbones:
        fpn_seeds = [r["AP"] for r in rows if r["neck"] == "fpn" and r["budget"] == "proxy" and r["backbone"] == b
                     and r["neck_init"] == init]
        zoo_ap = [ap for n, ap in proxy[b].items() if n in zoo]
        if len(fpn_seeds) < 2 or len(zoo_ap) < 2:
            continue
        seed_std, spread = statistics.stdev(fpn_seeds), statistics.stdev(zoo_ap)
        lines.append(
            f"- backbone {letter[b]}: fpn proxy AP over {len(fpn_seeds)} seeds "
            f"({', '.join(f'{x * 100:.1f}' for x in fpn_seeds)}): mean {statistics.mean(fpn_seeds) * 100:.2f}, "
            f"std **{seed_std * 100:.2f}** AP points; proxy AP across the {len(zoo_ap)} zoo necks: std "
            f"**{spread * 100:.2f}** (range {min(zoo_ap) * 100:.1f}-{max(zoo_ap) * 100:.1f}); spread / seed std "
            f"= **{spread / seed_std:.1f}** (goal >= 3)")

    cols = [b for b in backbones if proxy[b]]
    old_cols = [k for k in before if before[k]]
    lines += ["", "| neck | " + " | ".join(f"proxy AP ({letter[b]})" for b in cols)
              + "".join(f" | proxy AP ({letter[b]}, `{i}` init)" for b, i in old_cols)
              + " | full AP (backbone) | proxy rank | full rank |",
              "|---|" + "---|" * (len(cols) + len(old_cols)) + "---|---|---|"]
    rank_p = {n: r for r, n in enumerate(sorted(names, key=lambda n: -proxy[main][n]), 1)}
    for r, n in enumerate(names, 1):
        cells = ([f"{proxy[b][n] * 100:.1f}" if n in proxy[b] else "" for b in cols]
                 + [f"{before[k][n] * 100:.1f}" if n in before[k] else "" for k in old_cols])
        lines.append(f"| {n} | {' | '.join(cells)} | {full[n][0] * 100:.1f} ({letter[full[n][1]]}) | "
                     f"{rank_p[n]} | {r} |")
    lines.append(f"\nRanks: proxy on backbone {letter[main]}, full as listed.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(7, 5.5))
    for n in names:  # the same neck's proxy AP on different backbones, joined
        xs = [proxy[b][n] * 100 for b in cols if n in proxy[b]]
        if len(xs) > 1:
            ax.plot([min(xs), max(xs)], [full[n][0] * 100] * 2, color="0.75", lw=1, zorder=1)
    for i, b in enumerate(cols):
        colour = f"C{i}"
        f_b = full_for(b)
        ns = [n for n in proxy[b] if n in f_b]
        for same in (True, False):
            pts = [(proxy[b][n] * 100, f_b[n][0] * 100) for n in ns if (f_b[n][1] == b) == same]
            if pts:
                ax.scatter(*zip(*pts), zorder=2, edgecolors=colour, facecolors=colour if same else "none",
                           label=f"proxy on {letter[b]}, full on {'the same' if same else 'another'} backbone")
    # the proxy before its init changed, on the main backbone: where points came from
    earlier_on_main = [(b, i) for b, i in old_cols if b == main]
    for k, (b, i) in enumerate(earlier_on_main):
        pts = [(before[b, i][n] * 100, full[n][0] * 100) for n in names if n in before[b, i]]
        ax.scatter(*zip(*pts), zorder=1, marker="x+1"[k % 3], color=f"{0.35 + 0.4 * k / len(earlier_on_main):.2f}",
                   label=f"proxy on {letter[b]}, `{i}` init")
    for n in names:
        ax.annotate(n, (proxy[main][n] * 100, full[n][0] * 100), textcoords="offset points", xytext=(4, 3),
                    fontsize=7)
    ax.set_xlabel("proxy AP (%)")
    ax.set_ylabel("full AP (%)")
    tau = kendall_tau([proxy[main][n] for n in names], [full[n][0] for n in names])
    rho = spearman_rho([proxy[main][n] for n in names], [full[n][0] for n in names])
    ax.set_title(f"proxy ({letter[main]}) vs full, {len(names)} necks: Kendall tau {tau:.2f}, "
                 f"Spearman rho {rho:.2f}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
