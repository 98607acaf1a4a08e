"""Does the proxy rank necks the way a longer training does?

For the zoo and random samples of nasfpn_space (and fusion_space): AP under the `proxy` budget
(frozen cached backbone features, short schedule) against AP under `full` (10x the steps, the
backbone trained end to end). Prints Kendall tau and Spearman rho of the two rankings, and the
seed-to-seed std of fpn's proxy AP against the spread of proxy AP across the zoo.

Every finished run is appended to the CSV at once; re-running the script skips finished runs,
so an interrupted benchmark resumes. Writes benchmarks/results/proxy_fidelity.{csv,md,png}.

    python benchmarks/proxy_fidelity.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import nasfpn
from nasfpn.proxy.budgets import get_budget
from nasfpn.proxy.cost import module_flops
from nasfpn.proxy.data import load_data
from nasfpn.proxy.prepare import prepare
from nasfpn.proxy.train import run_trial

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ["neck", "budget", "seed", "AP", "AP50", "APs", "APm", "APl", "neck_flops", "train_seconds"]


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da * db > 0:
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denom if denom else float("nan")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(a: list[float], b: list[float]) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def necks(samples: int, fusion_samples: int) -> list[nasfpn.Genotype]:
    out = [nasfpn.load(n) for n in nasfpn.zoo_names("genotype")]
    space = nasfpn.load_space("nasfpn_space")
    for seed in range(samples):
        g = space.random_sample(seed)
        out.append(nasfpn.from_yaml(nasfpn.to_yaml(g).replace("name: nasfpn_space", f"name: nasfpn_space-{seed}")))
    fusion = nasfpn.load_space("fusion_space")
    for seed in range(fusion_samples):
        g = fusion.random_sample(seed)
        out.append(nasfpn.from_yaml(nasfpn.to_yaml(g).replace("name: fusion_space", f"name: fusion_space-{seed}")))
    return out


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{**r, "seed": int(r["seed"]), **{k: float(r[k]) if r[k] not in ("", "nan") else float("nan")
                                                  for k in FIELDS[3:]}} for r in csv.DictReader(f)]


def append_row(path: Path, row: dict) -> None:
    """Reopened per row: runs take minutes, and a file replaced meanwhile (a git checkout, say)
    must still receive every row, not an unlinked copy."""
    new_file = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
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
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--out", default=str(RESULTS / "proxy_fidelity"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    done = {(r["neck"], r["budget"], r["seed"]) for r in load_rows(csv_path)}

    budgets = {name: get_budget(name) for name in ("proxy", "full")}
    data = load_data("synthetic", budgets["proxy"].image_size, budgets["proxy"].train_images,
                     budgets["proxy"].val_images, cache=args.cache)
    wanted = set(args.budgets.split(","))
    prepared = {name: prepare(data, b, cache=args.cache, progress=False) for name, b in budgets.items()
                if name in wanted}
    jobs = []
    for g in necks(args.samples, args.fusion_samples):
        jobs.append((g, "proxy", 0))
        jobs.append((g, "full", 0))
        if g.name == "fpn":
            jobs += [(g, "proxy", s) for s in range(1, args.fpn_seeds)]
    jobs = [j for j in jobs if j[1] in wanted]
    # every proxy run first (they are cheap), then full runs from the cheapest neck up, so that an
    # interrupted run has covered as many necks as its time allowed
    jobs.sort(key=lambda j: (j[1] == "full", _neck_flops(j[0], budgets["proxy"]) if j[1] == "full" else 0))
    shard, shards = args.shard
    jobs = [j for j in jobs if (j[0].name, j[1], j[2]) not in done][shard::shards]
    for g, budget, seed in jobs:
        start = time.perf_counter()
        m = run_trial(g, prepared[budget], seed=seed, progress=False, measure=False)
        append_row(csv_path, {"neck": g.name, "budget": budget, "seed": seed,
                              **{k: m.get(k) for k in FIELDS[3:8]},
                              "neck_flops": _neck_flops(g, prepared[budget].budget),
                              "train_seconds": m["train_seconds"]})
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


def summarize(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proxy_steps, full_steps = get_budget("proxy").steps, get_budget("full").steps
    proxy = {r["neck"]: r["AP"] for r in rows if r["budget"] == "proxy" and r["seed"] == 0}
    full = {r["neck"]: r["AP"] for r in rows if r["budget"] == "full" and r["seed"] == 0}
    names = [n for n in proxy if n in full]
    if len(names) < 3:
        print("fewer than 3 necks with both budgets: nothing to correlate yet")
        return
    a, b = [proxy[n] for n in names], [full[n] for n in names]
    tau, rho = kendall_tau(a, b), spearman_rho(a, b)
    fpn_seeds = [r["AP"] for r in rows if r["neck"] == "fpn" and r["budget"] == "proxy"]
    seed_std = statistics.stdev(fpn_seeds) if len(fpn_seeds) > 1 else float("nan")
    zoo = set(nasfpn.zoo_names("genotype"))
    zoo_ap = [proxy[n] for n in proxy if n in zoo]
    spread = statistics.stdev(zoo_ap)
    lines = [
        f"Proxy fidelity on synthetic data, {len(names)} necks with both budgets "
        f"(`python benchmarks/proxy_fidelity.py`; `proxy`: {proxy_steps} steps on frozen cached backbone "
        f"features, `full`: {full_steps} steps end to end).", "",
        f"- Kendall tau (proxy AP vs full AP): **{tau:.3f}** (goal >= 0.6)",
        f"- Spearman rho: **{rho:.3f}**",
        f"- fpn proxy AP over {len(fpn_seeds)} seeds ({', '.join(f'{x * 100:.1f}' for x in fpn_seeds)}): "
        f"mean {statistics.mean(fpn_seeds) * 100:.2f}, std **{seed_std * 100:.2f}** AP points",
        f"- spread of proxy AP across the {len(zoo_ap)} zoo necks: std **{spread * 100:.2f}** "
        f"(range {min(zoo_ap) * 100:.1f}-{max(zoo_ap) * 100:.1f}); ratio spread / seed std = "
        f"**{spread / seed_std:.1f}** (goal >= 3)", "",
        "| neck | proxy AP | full AP | proxy rank | full rank |", "|---|---|---|---|---|"]
    rank_a = {n: r for r, n in enumerate(sorted(names, key=lambda n: -proxy[n]), 1)}
    rank_b = {n: r for r, n in enumerate(sorted(names, key=lambda n: -full[n]), 1)}
    for n in sorted(names, key=lambda n: -full[n]):
        lines.append(f"| {n} | {proxy[n] * 100:.1f} | {full[n] * 100:.1f} | {rank_a[n]} | {rank_b[n]} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter([x * 100 for x in a], [y * 100 for y in b])
    for n, x, y in zip(names, a, b):
        ax.annotate(n, (x * 100, y * 100), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("proxy AP (%)")
    ax.set_ylabel("full AP (%)")
    ax.set_title(f"proxy vs full: Kendall tau {tau:.2f}, Spearman rho {rho:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
