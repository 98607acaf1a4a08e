"""Typed trial records: what the searcher hands a trial (`TrialConfig`), what a trial reports at
each evaluation point (`TrialReport`), and what trials.jsonl keeps of each finished trial
(`TrialRecord`, its scores a `TrialMetrics`).

Ray's trial config, `tune.report` and the lines of trials.jsonl are plain dicts: each record
converts at that boundary (`to_dict` / `from_dict`, `to_json` / `from_json`) and nowhere else.
The dict keys are the format of the runs/ files, unchanged since the first committed run; a
line from before trials.jsonl kept each trial's rung scores (`rungs`) gets them, on reading,
from the last rung its metrics name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

BASELINE, SEARCH = "baseline", "search"
KINDS = (BASELINE, SEARCH)
COMPLETE, PRUNED, FAILED, ERROR = "complete", "pruned", "failed", "error"
STATES = (COMPLETE, PRUNED, FAILED, ERROR)
_NUMBER = (int, float)


class RecordError(ValueError):
    """A dict that is not the record it should be; the message names the field."""


def _get(line: Mapping, name: str, kinds: tuple[type, ...], what: str, required: bool = False):
    value = line.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kinds) or (bool not in kinds and int in kinds and isinstance(value, bool)):
        raise RecordError(f"{name}: {str(value)[:60]!r} is not {what}")
    return value


@dataclass(frozen=True)
class TrialMetrics:
    """The scores a record keeps, each None where the trial did not report it. `AP_rung` is the
    final AP on the rung images; `rung` and `ap_rung` are the evaluation point of the trial's
    last report and its score there."""

    AP: Optional[float] = None
    AP50: Optional[float] = None
    AP75: Optional[float] = None
    APs: Optional[float] = None
    APm: Optional[float] = None
    APl: Optional[float] = None
    AP_rung: Optional[float] = None
    ap_rung: Optional[float] = None
    rung: Optional[int] = None
    neck_params: Optional[int] = None
    model_params: Optional[int] = None
    neck_flops: Optional[int] = None
    model_flops: Optional[int] = None
    latency_ms: Optional[float] = None
    train_seconds: Optional[float] = None
    images_per_second: Optional[float] = None
    early_stopped: Optional[str] = None   # why training ended before its last step

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrialMetrics:
        """The metrics among `values` (a Tune result holds many other keys)."""
        kept = {}
        for name in cls.names():
            text = name == "early_stopped"
            value = _get(values, name, (str,) if text else _NUMBER, "a text" if text else "a number")
            if value is not None:
                kept[name] = value
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names() if getattr(self, name) is not None}


@dataclass(frozen=True)
class TrialConfig:
    """What the searcher hands a trial: a reference neck by name (`baseline`), or a point of the
    Optuna study (`sampled`: its number, params, graph key and genotype YAML), or a point that is
    no genotype (`unbuildable`: the DSL's reason), which the trial reports as failed. A trained
    trial `promoted` to the longer rung is the same neck again with `steps_factor` times the
    budget's steps."""

    kind: str
    neck: Optional[str] = None
    number: Optional[int] = None
    params: Optional[dict[str, Any]] = None
    key: Optional[str] = None
    genotype: Optional[str] = None
    invalid: Optional[str] = None
    steps_factor: Optional[int] = None

    @classmethod
    def baseline(cls, neck: str) -> TrialConfig:
        return cls(BASELINE, neck=neck)

    @classmethod
    def sampled(cls, number: int, params: dict[str, Any], key: str, genotype: str) -> TrialConfig:
        return cls(SEARCH, number=number, params=params, key=key, genotype=genotype)

    @classmethod
    def unbuildable(cls, number: int, params: dict[str, Any], reason: str) -> TrialConfig:
        return cls(SEARCH, number=number, params=params, invalid=reason)

    @classmethod
    def promoted(cls, record: TrialRecord, steps_factor: int) -> TrialConfig:
        neck = record.name if record.is_baseline else None
        return cls(record.kind, neck=neck, number=record.number, params=record.params, key=record.key,
                   genotype=record.genotype, steps_factor=steps_factor)

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE

    @property
    def is_promoted(self) -> bool:
        return self.steps_factor is not None

    @property
    def name(self) -> str:
        """How the trial is named in trials.jsonl and the leaderboard: `fpn`, `t12`."""
        return self.neck if self.is_baseline else f"t{self.number}"

    def to_dict(self) -> dict[str, Any]:
        longer = {} if self.steps_factor is None else {"steps_factor": self.steps_factor}
        if self.is_baseline:
            return {"kind": BASELINE, "neck": self.neck, **longer}
        point = {"kind": SEARCH, "number": self.number, "params": self.params}
        if self.invalid is not None:
            return {**point, "invalid": self.invalid}
        return {**point, "key": self.key, "genotype": self.genotype, **longer}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TrialConfig:
        kind = config.get("kind")
        if kind not in KINDS:
            raise RecordError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        return cls(kind, neck=config.get("neck"), number=config.get("number"), params=config.get("params"),
                   key=config.get("key"), genotype=config.get("genotype"), invalid=config.get("invalid"),
                   steps_factor=config.get("steps_factor"))


@dataclass(frozen=True)
class TrialReport:
    """What a trial tells Tune at an evaluation point: the rung (1..evals) and its score (AP on
    the first val images) in `metrics`, and every metric once `final`. A trial that failed
    reports `final` and `failed` with its error. `details` are the other values a final report
    carries (budget, data, versions, ...): Tune's result files keep them, trials.jsonl does not."""

    metrics: TrialMetrics = field(default_factory=TrialMetrics)
    final: bool = False
    failed: bool = False
    error: Optional[str] = None
    step: Optional[int] = None
    seconds: Optional[float] = None   # since the trial started
    node: Optional[str] = None
    pid: Optional[int] = None
    node_id: Optional[str] = None
    details: Mapping[str, Any] = field(default_factory=dict)

    _OWN = ("final", "failed", "error", "step", "seconds", "node", "pid", "node_id")

    @property
    def rung(self) -> Optional[int]:
        return self.metrics.rung

    @property
    def ap_rung(self) -> Optional[float]:
        return self.metrics.ap_rung

    def to_dict(self) -> dict[str, Any]:
        # rung and ap_rung even when None: Tune wants the searcher's metric in every result
        return {**self.details, **self.metrics.to_dict(), "rung": self.rung, "ap_rung": self.ap_rung,
                **{name: getattr(self, name) for name in self._OWN}}

    @classmethod
    def from_dict(cls, result: Mapping[str, Any]) -> TrialReport:
        """A report from a Tune result; Tune's own keys (trial_id, done, ...) land in `details`."""
        metric_names = TrialMetrics.names()
        details = {k: v for k, v in result.items() if k not in metric_names and k not in cls._OWN}
        return cls(TrialMetrics.from_dict(result), final=bool(result.get("final")),
                   failed=bool(result.get("failed")), error=result.get("error"), step=result.get("step"),
                   seconds=result.get("seconds"), node=result.get("node"), pid=result.get("pid"),
                   node_id=result.get("node_id"), details=details)


@dataclass(frozen=True)
class TrialRecord:
    """One line of trials.jsonl: a finished trial as the report, export and resume read it.
    `rungs` holds the score at each rung the trial reached; `started`/`ended` are the driver's
    clock, `duration` the trial's own."""

    trial_id: str
    kind: str
    name: str
    state: str
    number: Optional[int] = None
    key: Optional[str] = None
    params: Optional[dict[str, Any]] = None
    genotype: Optional[str] = None
    error: Optional[str] = None
    metrics: TrialMetrics = field(default_factory=TrialMetrics)
    rungs: Mapping[int, float] = field(default_factory=dict)
    started: Optional[float] = None
    ended: Optional[float] = None
    duration: Optional[float] = None
    node: Optional[str] = None
    node_id: Optional[str] = None

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE

    @property
    def ap(self) -> float:
        """The final AP; NaN for a trial without one."""
        return float("nan") if self.metrics.AP is None else float(self.metrics.AP)

    @property
    def has_ap(self) -> bool:
        """Completed with a final AP: a trial the leaderboard ranks."""
        return self.state == COMPLETE and not math.isnan(self.ap)

    @property
    def seconds(self) -> Optional[float]:
        """Seconds the trial ran: as the trial measured it, else as the driver saw it start and end."""
        if self.duration is not None:
            return self.duration
        if self.started is not None and self.ended is not None:
            return self.ended - self.started
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "kind": self.kind, "name": self.name, "number": self.number,
                "key": self.key, "params": self.params, "genotype": self.genotype, "state": self.state,
                "error": self.error, "metrics": self.metrics.to_dict(),
                "rungs": {str(k): v for k, v in sorted(self.rungs.items())},
                "started": self.started, "ended": self.ended, "duration": self.duration, "node": self.node,
                "node_id": self.node_id}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, allow_nan=True)

    @classmethod
    def from_dict(cls, line: Any) -> TrialRecord:
        """A record the report, export and resume can use as it is, else RecordError."""
        if not isinstance(line, dict):
            raise RecordError(f"a record is a JSON object, not {type(line).__name__}")
        kind, state = line.get("kind"), line.get("state")
        if kind not in KINDS:
            raise RecordError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        if state not in STATES:
            raise RecordError(f"state: {state!r} is not one of {', '.join(STATES)}")
        genotype = _get(line, "genotype", (str,), "a genotype's YAML", required=kind == SEARCH and state == COMPLETE)
        metrics = TrialMetrics.from_dict(_get(line, "metrics", (dict,), "an object") or {})
        return cls(trial_id=_get(line, "trial_id", (str,), "a text", required=True), kind=kind,
                   name=_get(line, "name", (str,), "a text", required=True), state=state,
                   number=_get(line, "number", (int,), "an Optuna trial number"),
                   key=_get(line, "key", (str,), "a graph key"), params=_get(line, "params", (dict,), "an object"),
                   genotype=genotype, error=_get(line, "error", (str,), "a text"), metrics=metrics,
                   rungs=_rungs(line, metrics), started=_get(line, "started", _NUMBER, "a time"),
                   ended=_get(line, "ended", _NUMBER, "a time"),
                   duration=_get(line, "duration", _NUMBER, "a number of seconds"),
                   node=_get(line, "node", (str,), "a host name"),
                   node_id=_get(line, "node_id", (str,), "a Ray node id"))

    @classmethod
    def from_json(cls, text: str) -> TrialRecord:
        try:
            line = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"not JSON ({exc})") from None
        return cls.from_dict(line)


def _rungs(line: Mapping, metrics: TrialMetrics) -> dict[int, float]:
    """The rung scores of a line; a line from before they were kept has the last rung's only."""
    rungs = _get(line, "rungs", (dict,), "an object")
    if rungs is None:
        known = metrics.rung is not None and metrics.ap_rung is not None
        return {metrics.rung: metrics.ap_rung} if known else {}
    out = {}
    for rung, score in rungs.items():
        if not (rung.isdigit() and isinstance(score, _NUMBER) and not isinstance(score, bool)):
            raise RecordError(f"rungs: {str(rung)[:20]!r}: {str(score)[:20]!r} is not a rung and its score")
        out[int(rung)] = score
    return out
