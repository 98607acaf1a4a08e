"""nasfpn report: the leaderboard, trials.csv and plots of a search run."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="leaderboard, trials.csv, pareto/progress plots of a run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..export.report import write_report
    from ..search.store import read_trial_log

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir() or not (run_dir / "manifest.json").exists():
        raise UserError(f"{run_dir}: not a search run directory (no manifest.json)")
    log = read_trial_log(run_dir)
    for line in log.warnings():
        print(f"warning: {line}", file=sys.stderr)
    if not log.records:
        raise UserError(f"{run_dir}: no finished trials yet")
    files = write_report(run_dir)
    print(files["leaderboard"].read_text())
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
