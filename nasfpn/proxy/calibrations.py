"""Which calibration a budget has on a dataset: `nasfpn calibrate` records its figures in the
cache (calibrations/KEY.json, KEY from the data and every field of the proxy budget but its
name) and beside its report (OUT/calibration.json, so a calibration committed with a project's
runs travels with it); `search` looks its budget up in the cache, then in the run folders beside
its own, records what it found in the run's manifest and warns once when there is none or its
tau is low."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Optional

from ..dsl.budget import Budget
from ..files import write_text

SHIPPED = "calibration.json"


def _key(data: str, budget: Budget) -> str:
    fields = {k: v for k, v in budget.as_dict().items() if k != "name"}
    return hashlib.sha1(json.dumps([data, fields], sort_keys=True).encode()).hexdigest()[:16]


def record_calibration(cache: Path, data: str, budget: Budget, reference: str, figures: dict, report: Path) -> Path:
    """Writes the entry to the cache and beside `report` (with the report named relative to it)."""
    key = _key(data, budget)
    entry = {"key": key, "data": data, "budget": budget.name, "reference": reference,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    path = cache / "calibrations" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(entry | {"report": str(report.resolve())}, indent=2) + "\n")
    write_text(report.parent / SHIPPED, json.dumps(entry | {"report": report.name}, indent=2) + "\n")
    return path


def _read(path: Path) -> Optional[dict]:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("tau"), (int, float)) else None


def find_calibration(cache: Path, data: str, budget: Budget, runs_dir: Optional[Path] = None) -> Optional[dict]:
    """The calibration of `budget` on `data` recorded in `cache`, else in a run folder of
    `runs_dir` (RUNS/*/calibration.json, its report named from there), or None (none, or unreadable)."""
    key = _key(data, budget)
    entry = _read(cache / "calibrations" / f"{key}.json")
    if entry is not None or runs_dir is None:
        return entry
    for path in sorted(Path(runs_dir).glob(f"*/{SHIPPED}")):
        entry = _read(path)
        if entry is not None and entry.get("key") == key:
            return entry | {"report": str(path.parent / str(entry.get("report", "calibration.md")))}
    return None
