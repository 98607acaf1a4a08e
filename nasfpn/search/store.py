"""The runs/NAME/ store of a search. The project's own state here is JSON, and its paths are
relative to the run directory, so a run directory can be copied, moved and resumed elsewhere.

    manifest.json      command line and arguments (secrets redacted), the resolved budget, space
                       file and its hash, study name, seeds, versions, git revision
    space.yaml         the search space as it was when the search started
    study.db           the Optuna study (SQLite, unless --storage names another database)
    trials.jsonl       one line per finished trial, appended and flushed as it finishes: the results
                       of record, which --resume and report read
    duplicates.jsonl   points whose graph was already trained, and what they reused
    promoted.jsonl     the trials trained again at the longer rung (`--promote`), as trials.jsonl
    infeasible.jsonl   sampled points over --max-flops / --max-params, never trained
    warm_start.jsonl   the points told to the study before or beside sampling (`--warm-start`)
    tune/              Ray Tune's own files (per-trial results; its pickles are never loaded back)
    leaderboard.md, trials.csv, pareto.png, progress.png, best_cell.png, best_genotype.yaml
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd

from .._version import versions
from ..files import FileProblem, read_text, write_text
from .errors import SearchError
from .records import RecordError, TrialRecord

TRIALS = "trials.jsonl"
MANIFEST = "manifest.json"
SPACE = "space.yaml"
STUDY_DB = "study.db"
DUPLICATES = "duplicates.jsonl"
INFEASIBLE = "infeasible.jsonl"    # sampled points over --max-flops / --max-params, never trained
PROMOTED = "promoted.jsonl"        # trials trained again at the longer rung
WARM_START = "warm_start.jsonl"    # points told to the study, not trained by this run
MANIFEST_FORMAT = "nasfpn-run/1"
SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key", re.I)
MAX_RUN_FILE_BYTES = 1 << 30


# ----------------------------------------------------------------------------- secrets
def redact(url: str) -> str:
    """A URL without its secrets (a password in it, a password/token/key query parameter); the
    rest of it exactly as given."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    base, mark, query = url.partition("?")
    if password:
        scheme, sep, rest = base.partition("://")
        base = scheme + sep + rest.replace(f":{password}@", ":***@", 1)
    if mark:
        pairs = [(k, "***" if SECRET_PARAM.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return base + mark + query


def redact_argv(argv: list[str]) -> list[str]:
    """A command line as it may be written down: every URL in it redacted."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("--") and "://" in value:
            out.append(f"{flag}={redact(value)}")
        else:
            out.append(redact(arg) if "://" in arg else arg)
    return out


# ----------------------------------------------------------------------------- the manifest
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


def write_manifest(run_dir: Path, args: dict, space_path: str, study_name: str, run_id: str,
                   budget: dict | None = None, calibration: dict | None = None) -> dict:
    """manifest.json and the copy of the space it names; `args` must hold no secret. `budget` is
    the resolved budget (every field), what a resumed search trains on; `calibration`, the
    budget's calibration on the data, if it has one."""
    space_text = read_text(space_path)
    write_text(run_dir / SPACE, space_text)
    manifest = {
        "format": MANIFEST_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": redact_argv([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "args": args,
        "budget": budget,
        "calibration": calibration,
        "space": {"file": SPACE, "source": str(space_path),
                  "sha256": hashlib.sha256(space_text.encode("utf-8")).hexdigest()},
        "study": study_name,
        "run_id": run_id,
        "storage": args.get("storage") or f"sqlite: {STUDY_DB} in this folder",
        "seeds": {"sampler": args["seed"], "trials": args["trial_seed"], "backbone": args["backbone_seed"]},
        "versions": versions(),
        "git": _git_revision(),
        "host": platform.node(),
    }
    write_text(run_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def budget_differences(manifest: dict, budget: dict) -> list[tuple[str, object, object]]:
    """(field, the run's value, `budget`'s) for each field where the budget a manifest records
    differs from `budget` (both as `Budget.as_dict()` gives them; a field one leaves out, as an
    older record or an fcos budget does, has its default), the budget's name aside."""
    from ..dsl.budget import Budget

    theirs = manifest.get("budget") or {}

    def value(d: dict, key: str):
        return d.get(key, getattr(Budget, key, None))

    return [(k, value(theirs, k), value(budget, k)) for k in sorted((theirs.keys() | budget.keys()) - {"name"})
            if value(theirs, k) != value(budget, k)]


def read_manifest(run_dir: Path) -> dict:
    """The manifest, checked on open; a missing or damaged one is a SearchError saying what to do."""
    path = run_dir / MANIFEST
    if not path.exists():
        raise SearchError(f"{run_dir}: not a search run directory (no {MANIFEST})")
    try:
        manifest = json.loads(read_text(path, MAX_RUN_FILE_BYTES))
    except FileProblem as problem:
        raise SearchError(str(problem)) from None
    except (ValueError, RecursionError) as exc:
        raise SearchError(f"{path}: damaged, not valid JSON ({exc}); restore it from a copy of the run "
                          "directory, or start a new search with another --name") from None
    missing = [k for k in ("args", "space") if not isinstance(manifest, dict) or not isinstance(manifest.get(k), dict)]
    if missing:
        raise SearchError(f"{path}: damaged: '{missing[0]}' is missing; restore it from a copy of the run "
                          "directory, or start a new search with another --name")
    return manifest


def space_file(run_dir: Path, manifest: dict) -> Path:
    """The run's own copy of its space (runs from before it kept one: the original, if unchanged)."""
    space = manifest["space"]
    name, original = space.get("file", SPACE), space.get("path", "")
    if not (isinstance(name, str) and Path(name).name == name and name not in ("", ".", "..")
            and isinstance(original, str)):
        raise SearchError(f"{run_dir / MANIFEST}: damaged: 'space.file' is not a file name in the run "
                          "directory; restore it from a copy of the run directory")
    path = run_dir / name
    if not path.exists():
        path = Path(original)
    try:
        text = read_text(path)
    except FileProblem as problem:
        raise SearchError(f"{run_dir}: the search space of this run is missing ({problem})") from None
    if space.get("sha256") and hashlib.sha256(text.encode("utf-8")).hexdigest() != space["sha256"]:
        raise SearchError(f"{path}: the search space differs from the one this run started with "
                          f"(SHA-256 in {run_dir / MANIFEST}); restore it to resume")
    return path


# ----------------------------------------------------------------------------- trials
def _append(path: Path, line: str) -> None:
    """Append one line and flush it to disk before anything else happens. A torn last line
    (a run killed while writing) is closed off first, so it never swallows the new one."""
    with open(path, "ab+") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((line + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def append_line(path: Path, entry: dict) -> None:
    """Append `entry` as one JSON line (see `_append`)."""
    _append(path, json.dumps(entry, default=str, allow_nan=True))


def append_trial(run_dir: Path, record: TrialRecord, log: str = TRIALS) -> None:
    _append(run_dir / log, record.to_json())


@dataclass
class TrialLog:
    """The finished trials of a run, and the lines of trials.jsonl that could not be read."""

    records: list[TrialRecord]
    path: Path
    unreadable: list[int] = field(default_factory=list)   # line numbers
    torn_last: bool = False                                 # the last line is cut (a killed write)

    def warnings(self) -> list[str]:
        out = []
        if self.torn_last:
            out.append(f"{self.path}:{self.unreadable[-1]}: the last line is incomplete (the run was killed "
                       "while writing it); the complete trials are reported")
        others = self.unreadable[:-1] if self.torn_last else self.unreadable
        if others:
            out.append(f"{self.path}: {len(others)} unreadable line(s) skipped (lines "
                       f"{', '.join(map(str, others[:10]))})")
        return out


def read_trial_log(run_dir: Path, log: str = TRIALS) -> TrialLog:
    """Finished trials, in finishing order; the last record wins when a trial was recorded twice.
    `log`: trials.jsonl, or promoted.jsonl (the same records, at the longer rung)."""
    path = run_dir / log
    if not path.exists():
        return TrialLog([], path)
    try:
        data = read_text(path, MAX_RUN_FILE_BYTES, "MAX_RUN_FILE_BYTES")
    except FileProblem as problem:
        raise SearchError(str(problem)) from None
    records: dict[str, TrialRecord] = {}
    unreadable = []
    lines = data.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = TrialRecord.from_json(line)
        except RecordError:
            unreadable.append(number)
            continue
        records[record.trial_id] = record
    torn = bool(unreadable) and unreadable[-1] == len(lines) and not data.endswith("\n")
    ordered = sorted(records.values(), key=lambda r: r.ended or 0)
    return TrialLog(ordered, path, unreadable, torn)


def read_trials(run_dir: Path) -> list[TrialRecord]:
    return read_trial_log(run_dir).records


def read_promoted(run_dir: Path) -> list[TrialRecord]:
    return read_trial_log(run_dir, PROMOTED).records


def trials_frame(records: list[TrialRecord]) -> pd.DataFrame:
    """A row per trial: identity, each sampled choice (`param:` columns), each metric, state,
    duration, error."""
    rows = []
    for r in records:
        row = {"trial_id": r.trial_id, "kind": r.kind, "name": r.name, "state": r.state, "graph_key": r.key,
               "optuna_number": r.number, "duration_s": r.seconds, "error": r.error, "node": r.node}
        row.update({f"param:{k}": v for k, v in (r.params or {}).items()})
        row.update(r.metrics.to_dict())
        rows.append(row)
    return pd.DataFrame(rows)
