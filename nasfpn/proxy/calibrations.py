"""Which calibration a budget has on a dataset: `nasfpn calibrate` records its figures in the
cache (calibrations/KEY.json, KEY from the data and every field of the proxy budget but its
name), and `search` looks its budget up there, records what it found in the run's manifest and
warns once when there is none or its tau is low."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Optional

from ..dsl.budget import Budget
from ..files import write_text


def _key(data: str, budget: Budget) -> str:
    fields = {k: v for k, v in budget.as_dict().items() if k != "name"}
    return hashlib.sha1(json.dumps([data, fields], sort_keys=True).encode()).hexdigest()[:16]


def record_calibration(cache: Path, data: str, budget: Budget, reference: str, figures: dict, report: Path) -> Path:
    path = cache / "calibrations" / f"{_key(data, budget)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"data": data, "budget": budget.name, "reference": reference, "report": str(report.resolve()),
             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    write_text(path, json.dumps(entry, indent=2) + "\n")
    return path


def find_calibration(cache: Path, data: str, budget: Budget) -> Optional[dict]:
    """The calibration of `budget` on `data` recorded in `cache`, or None (none, or unreadable)."""
    path = cache / "calibrations" / f"{_key(data, budget)}.json"
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("tau"), (int, float)) else None
