"""Do TPE and regularized evolution find better necks than random search?

Runs `--seeds` searches per sampler (random, TPE, evolution) of `--trials` trials on nasfpn_space
at the proxy budget, one trial at a time with all threads, no baselines. Prints the best AP
found after N trials (mean and min..max over seeds) next to the best baseline under the same head
(runs/baselines or runs/heads/HEAD), and how many trials each sampler needs to reach random
search's mean best. Writes benchmarks/results/search_efficiency.{md,csv,png}. Searches run seed by seed (every sampler's
seed 0 first); a finished search is reused and an interrupted one resumed when re-run, if it ran
under the budget this run asks for (`--set` overrides the proxy's fields; give searches under
another budget their own `--runs-dir` and `--out`).
`benchmarks/trial_overhead.py` measures what Ray and Optuna cost per trial.

    python benchmarks/search_efficiency.py --trials 40 --seeds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def best_baseline(head: str) -> tuple[str, float] | None:
    """The best neck of the baselines table under `head` at the proxy budget, where
    benchmarks/heads.py keeps it; None if there is none."""
    from heads import table_dir  # a script beside this one (its folder is on sys.path)

    table = table_dir(head) / "table.csv"
    if not table.exists():
        return None
    with table.open() as f:
        best = max(csv.DictReader(f), key=lambda r: float(r["AP_mean"]))
    return best["neck"], float(best["AP_mean"])


def run_one(sampler: str, seed: int, trials: int, runs_dir: Path, cache: str | None, threads: int,
            sets: list[str], train: bool = True) -> dict | None:
    """The search's best-AP curve, running (or resuming) it first; None if it has not finished
    and `train` is off. Exits where the run folder holds a search under another budget."""
    from nasfpn.dsl.budget import read_budget
    from nasfpn.search import SearchError, SearchOptions, run_search
    from nasfpn.search.store import budget_differences, read_manifest, read_trials

    name = f"{sampler}-s{seed}"
    run = runs_dir / name
    if (run / "manifest.json").exists():
        try:
            changed = budget_differences(read_manifest(run), read_budget("proxy", sets).as_dict())
        except SearchError as problem:
            sys.exit(str(problem))
        if changed:
            sys.exit(f"{run}: searched under another budget ({'; '.join(f'{k} {a}, not {b}' for k, a, b in changed)}); "
                     "give --runs-dir a folder of its own")
    timing = run / "benchmark_timing.json"
    if not timing.exists() and not train:
        return None
    if not timing.exists():
        opts = SearchOptions(space=str(ROOT / "search_spaces" / "nasfpn_space.yaml"), trials=trials, sets=sets,
                             sampler=sampler, seed=seed, concurrency=1, cpus_per_trial=threads, cpus=threads,
                             baselines=[], name=name, runs_dir=str(runs_dir), cache=cache, progress=False,
                             promote=0)  # the curves count sampled trials at one fidelity
        resumed = (run / "manifest.json").exists()
        start = time.perf_counter()
        _, finished = run_search(opts, resume=run if resumed else None)
        if not finished:  # interrupted: left to resume, never counted as a finished search
            sys.exit(f"{name}: interrupted after {len(read_trials(run))} of {trials} trials; "
                     "run the same command again to resume it")
        timing.write_text(json.dumps({"wall_seconds": time.perf_counter() - start, "resumed": resumed}))
    records = read_trials(run)
    best, curve = 0.0, []
    for r in sorted(records, key=lambda r: r.ended):
        if r.state == "complete" and r.metrics.AP is not None:
            best = max(best, r.metrics.AP)
        curve.append(best)
    return {"sampler": sampler, "seed": seed, "curve": curve, "n": len(records),
            "states": [r.state for r in records]}


def trials_to_reach(curve: list[float], target: float) -> int | None:
    """The first trial count whose best AP is at least `target`, None if never."""
    return next((i for i, v in enumerate(curve, 1) if v >= target), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samplers", default="random,tpe,evolution")
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "search_efficiency"))
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the proxy budget (repeatable), e.g. --set head=fcos")
    parser.add_argument("--out", default=str(RESULTS / "search_efficiency"),
                        help="where the .md, .csv and .png go (a path without the suffix)")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: report the searches that have finished")
    args = parser.parse_args()
    from nasfpn.dsl import DSLError
    from nasfpn.dsl.budget import read_budget

    try:
        budget = read_budget("proxy", args.sets)  # a bad --set is one line, before Ray starts
    except DSLError as problem:
        sys.exit(f"error: {problem}")

    import ray

    from nasfpn.search.cluster import connect_ray

    if not args.finished_only:
        connect_ray(None, args.threads)  # the embedded Ray, bound to 127.0.0.1
    wanted = args.samplers.split(",")
    runs = [r for k in range(args.seeds) for s in wanted
            if (r := run_one(s, k, args.trials, Path(args.runs_dir), args.cache, args.threads, args.sets,
                             train=not args.finished_only)) is not None]
    ray.shutdown()
    samplers = [s for s in wanted if any(r["sampler"] == s for r in runs)]
    if not samplers:
        print("no search has finished yet")
        return 1
    seeds = {s: sorted(r["seed"] for r in runs if r["sampler"] == s) for s in samplers}

    base = best_baseline(budget.head)
    out = Path(args.out)
    given = "".join(f" --set {s}" for s in args.sets)
    if out != RESULTS / "search_efficiency":
        given += f" --runs-dir {args.runs_dir} --out {args.out}"
    checkpoints = sorted({n for n in (5, 10, 20, 30, 40, args.trials) if n <= args.trials})
    partial = any(len(v) < args.seeds for v in seeds.values()) or len(samplers) < len(wanted)
    lines = [f"Search efficiency on nasfpn_space, proxy budget ({budget.head} head), {args.seeds} seeds per "
             f"sampler, {args.trials} trials each, one trial at a time on {args.threads} threads "
             f"(`python benchmarks/search_efficiency.py --trials {args.trials} --seeds {args.seeds}{given}`)."
             + (" So far: " + "; ".join(f"{s} seed(s) {', '.join(map(str, v))}" for s, v in seeds.items())
                + " have finished." if partial else ""), "",
             "Best AP (%) found after N trials: mean over seeds (min..max)." +
             (f" Best baseline under the same proxy: {base[0]} {base[1] * 100:.1f}." if base else ""), "",
             "| sampler | " + " | ".join(f"N={n}" for n in checkpoints) + " |",
             "|---|" + "---|" * len(checkpoints)]
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sampler", "seed", "trial", "best_AP"])
        for r in runs:
            for i, v in enumerate(r["curve"], 1):
                writer.writerow([r["sampler"], r["seed"], i, f"{v:.6f}"])
    for sampler in samplers:
        mine = [r for r in runs if r["sampler"] == sampler]
        cells = []
        for n in checkpoints:
            values = [r["curve"][min(n, len(r["curve"])) - 1] * 100 for r in mine]
            cells.append(f"{statistics.mean(values):.1f} ({min(values):.1f}..{max(values):.1f})")
        lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
    if "random" in samplers:
        target = statistics.mean(r["curve"][-1] for r in runs if r["sampler"] == "random")
        lines += ["", f"Trials each search needed to reach random search's mean best after {args.trials} trials "
                  f"({target * 100:.1f} AP; goal: the best sampler in at most {args.trials // 2}):", ""]
        for sampler in samplers:
            reached = [trials_to_reach(r["curve"], target) for r in runs if r["sampler"] == sampler]
            mean_curve = [statistics.mean(r["curve"][i] for r in runs if r["sampler"] == sampler)
                          for i in range(min(len(r["curve"]) for r in runs if r["sampler"] == sampler))]
            lines.append(f"- {sampler}: per seed " + ", ".join("never" if n is None else str(n) for n in reached)
                         + f"; mean curve at {trials_to_reach(mean_curve, target) or 'never'}")
    pruned = sum(s == "pruned" for r in runs for s in r["states"])
    lines += ["", f"{pruned} of {sum(r['n'] for r in runs)} trials were stopped early by ASHA."]
    text = "\n".join(lines) + "\n"
    print(text)
    out.with_suffix(".md").write_text(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, sampler in zip(("C1", "C0", "C2", "C4"), samplers):
        for r in (r for r in runs if r["sampler"] == sampler):
            ax.plot(range(1, len(r["curve"]) + 1), [v * 100 for v in r["curve"]], color=color, alpha=0.35)
        n = min(len(r["curve"]) for r in runs if r["sampler"] == sampler)
        mean = [statistics.mean(r["curve"][i] * 100 for r in runs if r["sampler"] == sampler) for i in range(n)]
        ax.plot(range(1, n + 1), mean, color=color, lw=2, label=f"{sampler} (mean of {len(seeds[sampler])})")
    if base:
        ax.axhline(base[1] * 100, color="C3", ls="--", lw=1, label=f"best baseline ({base[0]})")
    ax.set_xlabel("trials")
    ax.set_ylabel("best AP so far (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
