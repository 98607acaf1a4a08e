"""Do the necks rank the same under every head? The zoo's baselines table at the proxy budget under
fcos, retina, faster_rcnn and cornernet (each `nasfpn baselines --budget proxy --set head=HEAD`,
3 seeds), the Kendall tau between every two heads' rankings, which necks rise or fall against
fcos, and what a trial costs under each head.

    python benchmarks/heads.py --seeds 3                       # every head's table (resumes), then the summary
    python benchmarks/heads.py --heads cornernet --threads 1   # one head per process, to shard
    python benchmarks/heads.py --timing --threads 2            # fpn under each head back to back, on an idle machine
    python benchmarks/heads.py --summarize                     # only the summary, from the tables there are

The table of the proxy preset's own head is runs/baselines (the committed one, reused when its runs
match); the others go to runs/heads/HEAD/. Writes benchmarks/results/heads.{md,csv} (and
heads_timing.jsonl with --timing).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
HEADS = ("fcos", "retina", "faster_rcnn", "cornernet")
TIMING = RESULTS / "heads_timing.jsonl"


def table_dir(head: str) -> Path:
    """runs/baselines for the proxy preset's own head (the committed baselines table), else runs/heads/HEAD."""
    from nasfpn.dsl.budget import read_budget

    return ROOT / "runs" / ("baselines" if head == read_budget("proxy").head else f"heads/{head}")


def run_baselines(head: str, seeds: int, cache: str | None, threads: int) -> None:
    from nasfpn.cli import main

    args = ["baselines", "--budget", "proxy", "--set", f"head={head}", "--seeds", str(seeds),
            "--out", str(table_dir(head)), "--threads", str(threads), "--no-progress"]
    if cache:
        args += ["--cache", cache]
    if main(args) != 0:
        raise SystemExit(f"baselines under {head} failed")


def read_table(head: str) -> dict[str, dict] | None:
    path = table_dir(head) / "table.csv"
    if not path.exists():
        return None
    with path.open() as f:
        return {row["neck"]: row for row in csv.DictReader(f)}


def timing(cache: str | None, threads: int, necks: list[str]) -> None:
    """Each neck under each head, one after another in this process (seed 0): the train and whole
    trial seconds, appended to heads_timing.jsonl (a re-run skips what is there)."""
    import time

    import torch

    import nasfpn
    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.session import ProxySession
    from nasfpn.proxy.train import run_trial

    torch.set_num_threads(threads)
    done = set()
    if TIMING.exists():
        done = {(r["neck"], r["head"]) for r in map(json.loads, TIMING.read_text().splitlines()) if r}
    for neck in necks:
        for head in HEADS:
            if (neck, head) in done:
                continue
            session = ProxySession.open("synthetic", read_budget("proxy", [f"head={head}"]), cache=cache,
                                        progress=False)
            start = time.perf_counter()
            m = run_trial(nasfpn.load(neck), session, progress=False, measure=False)
            row = {"neck": neck, "head": head, "threads": threads, "train_seconds": m["train_seconds"],
                   "trial_seconds": time.perf_counter() - start, "AP": m["AP"]}
            with TIMING.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{neck} under {head}: train {m['train_seconds']:.0f} s, AP {m['AP'] * 100:.1f}")


def full_reference() -> dict[str, float]:
    """neck -> AP % of its latest `full` run in the proxy-fidelity log (rows are appended in order)."""
    path = RESULTS / "proxy_fidelity.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {r["neck"]: float(r["AP"]) * 100 for r in csv.DictReader(f)
                if r["budget"] == "full" and r["neck_init"] == "default"}


def summarize() -> int:
    from nasfpn.export.ranking import kendall_tau

    tables = {h: t for h in HEADS if (t := read_table(h)) is not None}
    if len(tables) < 2:
        print("fewer than two heads have a table: nothing to compare", file=sys.stderr)
        return 1
    necks = sorted(set.intersection(*(set(t) for t in tables.values())))
    ap = {h: {n: float(t[n]["AP_mean"]) * 100 for n in necks} for h, t in tables.items()}
    std = {h: {n: float(t[n]["AP_std"]) * 100 for n in necks} for h, t in tables.items()}
    seconds = {h: {n: float(t[n]["train_seconds"]) for n in necks} for h, t in tables.items()}
    rank = {h: {n: 1 + sorted(necks, key=lambda m: -ap[h][m]).index(n) for n in necks} for h in tables}
    heads = list(tables)
    lines = ["The zoo's baselines at the `proxy` budget under each head (`python benchmarks/heads.py --seeds 3`; "
             "AP %, mean ± std over seeds, rank in brackets); the tables are "
             + ", ".join(f"`{table_dir(h).relative_to(ROOT)}/table.md`" for h in heads) + ".", "",
             "| neck | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for n in sorted(necks, key=lambda m: rank["fcos"][m] if "fcos" in rank else m):
        lines.append(f"| {n} | " + " | ".join(f"{ap[h][n]:.1f} ± {std[h][n]:.1f} ({rank[h][n]})" for h in heads)
                     + " |")
    lines += ["", "Kendall tau between the heads' rankings of these necks (by mean AP):", ""]
    rows = []
    for a, b in itertools.combinations(heads, 2):
        tau = kendall_tau([ap[a][n] for n in necks], [ap[b][n] for n in necks])
        rows.append({"a": a, "b": b, "tau": tau})
        lines.append(f"- {a} vs {b}: **{tau:.3f}**")
    if "fcos" in tables:
        lines += ["", "Against fcos, the necks that move by two ranks or more:", ""]
        moved = [(h, n, rank["fcos"][n] - rank[h][n]) for h in heads if h != "fcos" for n in necks]
        moved = [m for m in moved if abs(m[2]) >= 2]
        lines += [f"- under {h}, {n} {'rises' if d > 0 else 'falls'} {abs(d)} ({rank['fcos'][n]} -> {rank[h][n]})"
                  for h, n, d in sorted(moved)] or ["- none"]
        lines += ["", "Training seconds per trial (mean over the zoo and seeds, as each table ran: the tables ran "
                  "at different times, thread counts and loads of a shared machine; the timing below compares "
                  "the heads):", ""]
        for h in heads:
            mean = sum(seconds[h].values()) / len(necks)
            base = sum(seconds["fcos"].values()) / len(necks)
            lines.append(f"- {h}: {mean:.0f} s ({mean / base:.2f}x fcos)")
    if TIMING.exists():
        timed = [json.loads(line) for line in TIMING.read_text().splitlines() if line.strip()]
        lines += ["", "One neck under each head back to back in one process (`python benchmarks/heads.py --timing`):",
                  "", "| neck | head | threads | train (s) | trial (s) | x fcos (trial) |", "|---|---|---|---|---|---|"]
        fcos = {r["neck"]: r["trial_seconds"] for r in timed if r["head"] == "fcos"}
        for r in timed:
            ratio = f"{r['trial_seconds'] / fcos[r['neck']]:.2f}" if r["neck"] in fcos else "-"
            lines.append(f"| {r['neck']} | {r['head']} | {r['threads']} | {r['train_seconds']:.0f} | "
                         f"{r['trial_seconds']:.0f} | {ratio} |")
    full = full_reference()
    if full and all(n in full for n in necks):
        lines += ["", "Kendall tau of each head's proxy ranking against the `full` budget's (fcos, fp32, one seed, "
                  "the latest run of each neck in benchmarks/results/proxy_fidelity.csv: older code and "
                  "pretrained backbones than these tables, so a lead, not a calibration):", ""]
        lines += [f"- {h}: {kendall_tau([ap[h][n] for n in necks], [full[n] for n in necks]):.3f}" for h in heads]
    missing = [h for h in HEADS if h not in tables]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)} (their tables are still training)."]
    (RESULTS / "heads.md").write_text("\n".join(lines) + "\n")
    with (RESULTS / "heads.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["neck", *[f"{h}_{k}" for h in heads for k in ("AP", "std", "rank")]])
        for n in necks:
            writer.writerow([n, *[v for h in heads for v in (f"{ap[h][n]:.2f}", f"{std[h][n]:.2f}", rank[h][n])]])
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timing", action="store_true", help="time fpn under each head instead")
    parser.add_argument("--timing-necks", default="fpn")
    parser.add_argument("--summarize", action="store_true", help="only write the summary")
    args = parser.parse_args()
    if args.timing:
        timing(args.cache, args.threads, args.timing_necks.split(","))
    elif not args.summarize:
        for head in args.heads.split(","):
            run_baselines(head, args.seeds, args.cache, args.threads)
    return summarize()


if __name__ == "__main__":
    sys.exit(main())
