"""The runs/NAME/ store of a search.

    manifest.json      command line, arguments, space file and its hash, seeds, versions, git revision
    study.db           the Optuna study (SQLite, unless --storage names another database)
    tune/              Ray Tune's experiment state (what --resume restores)
    trials.jsonl       one line per finished trial, appended as it finishes (the results of record)
    duplicates.jsonl   points whose graph was already trained, and what they reused
    leaderboard.md, trials.csv, pareto.png, progress.png, best_cell.png, best_genotype.yaml
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from .. import __version__

TRIALS = "trials.jsonl"
MANIFEST = "manifest.json"


def redact(url: str) -> str:
    """A storage URL without its password, for files and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "nasfpn": __version__}
    for name in ("torch", "ray", "optuna", "pandas", "numpy", "faster_coco_eval"):
        try:
            out[name] = getattr(__import__(name), "__version__", "installed")
        except ImportError:
            pass
    return out


def write_manifest(run_dir: Path, args: dict, space_path: str, storage: str) -> dict:
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "args": args,
        "space": {"path": str(space_path), "sha256": hashlib.sha256(Path(space_path).read_bytes()).hexdigest()},
        "storage": redact(storage),
        "seeds": {"sampler": args["seed"], "trials": args["trial_seed"], "backbone": args["backbone_seed"]},
        "versions": versions(),
        "git": _git_revision(),
        "host": platform.node(),
    }
    path = run_dir / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return manifest


def read_manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / MANIFEST).read_text())


def append_trial(run_dir: Path, record: dict) -> None:
    """Append one finished trial and flush it to disk before anything else happens."""
    with (run_dir / TRIALS).open("a") as f:
        f.write(json.dumps(record, default=str, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_trials(run_dir: Path) -> list[dict]:
    """Finished trials; the last record wins when a trial was recorded twice (a resumed run)."""
    path = run_dir / TRIALS
    if not path.exists():
        return []
    records: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["trial_id"]] = record
    return sorted(records.values(), key=lambda r: r.get("ended", 0))


def trial_seconds(record: dict) -> float | None:
    """Seconds the trial ran: as the trial measured it, else as the driver saw it start and end."""
    if record.get("duration") is not None:
        return record["duration"]
    if record.get("started") is not None and record.get("ended") is not None:
        return record["ended"] - record["started"]
    return None


def trials_frame(records: list[dict]) -> pd.DataFrame:
    """A row per trial: identity, each sampled choice (`param:` columns), each metric, state,
    duration, error."""
    rows = []
    for r in records:
        row = {"trial_id": r["trial_id"], "kind": r["kind"], "name": r["name"], "state": r["state"],
               "graph_key": r.get("key"), "optuna_number": r.get("number"),
               "duration_s": trial_seconds(r), "error": r.get("error"), "node": r.get("node")}
        row.update({f"param:{k}": v for k, v in (r.get("params") or {}).items()})
        row.update({k: v for k, v in (r.get("metrics") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)
