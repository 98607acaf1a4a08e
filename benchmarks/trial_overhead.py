"""Where does a search's wall time outside the trials go?

Runs one small search (random sampler, one trial at a time on all threads, no baselines, proxy
budget) and splits the time outside the trial function into the gap between one trial ending
and the next starting (actor start-up) and the driver-side bookkeeping around each trial.
`--compare RUN_DIR` prints the same split for an earlier run (e.g. one of search_efficiency's).

    python benchmarks/trial_overhead.py --trials 10 --compare runs/search_efficiency-fcos/random-s0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def split(run: Path, limit: int) -> str:
    from nasfpn.search.store import read_trials

    records = sorted(read_trials(run)[:limit], key=lambda r: r.started)
    inside = sum(r.duration for r in records) / len(records)
    gaps = [b.started - a.ended for a, b in zip(records, records[1:])]
    around = sum(r.ended - r.started - r.duration for r in records) / len(records)
    gap = sum(gaps) / max(len(gaps), 1)
    return (f"{run}: {len(records)} trials, mean trial {inside:.1f} s, gap between trials {gap:.2f} s, "
            f"bookkeeping around a trial {around:.2f} s: {(gap + around) / inside * 100:.1f}% of a trial")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "trial_overhead"))
    parser.add_argument("--compare", help="an earlier run directory to split the same way")
    args = parser.parse_args()

    import ray

    from nasfpn.search import SearchOptions, run_search
    from nasfpn.search.cluster import connect_ray

    connect_ray(None, args.threads)  # the embedded Ray, bound to 127.0.0.1
    name = f"random-{args.trials}-{time.strftime('%Y%m%d-%H%M%S')}"
    opts = SearchOptions(space=str(ROOT / "search_spaces" / "nasfpn_space.yaml"), trials=args.trials,
                         sampler="random", seed=0, concurrency=1, cpus_per_trial=args.threads, cpus=args.threads,
                         baselines=[], name=name, runs_dir=args.runs_dir, cache=args.cache, progress=False)
    start = time.perf_counter()
    run_search(opts)
    wall = time.perf_counter() - start
    ray.shutdown()
    print(split(Path(args.runs_dir) / name, args.trials))
    print(f"wall time of the whole search, one-time start-up and report included: {wall:.1f} s")
    if args.compare:
        print(split(Path(args.compare), args.trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
