"""Typed trial records: the committed runs read into records and back to the same JSON lines (a
line from before `rungs` was kept gains it, migrated from its metrics), their report is the
committed one, and what the searcher hands a trial, a trial reports and the store keeps each
convert to the dicts Ray and trials.jsonl take and back."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from nasfpn.search.records import (
    RecordError,
    TrialConfig,
    TrialMetrics,
    TrialRecord,
    TrialReport,
)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(ROOT.glob("runs/**/trials.jsonl"))


def test_every_committed_run_is_found():
    names = {p.parent.relative_to(ROOT / "runs").as_posix() for p in COMMITTED}
    assert names >= {"nasfpn-60", *(f"search_efficiency-fcos/{s}-s0" for s in ("random", "tpe", "evolution"))}


def _with_rungs(line: dict) -> dict:
    """The line as trials.jsonl is written today: `rungs` after `metrics`."""
    out = {}
    for key, value in line.items():
        out[key] = value
        if key == "metrics" and "rungs" not in line:
            out["rungs"] = {str(value["rung"]): value["ap_rung"]}
    return out


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_a_committed_trials_jsonl_reads_into_records_and_back_to_the_same_lines(path):
    lines = path.read_text().splitlines()
    assert lines
    for number, text in enumerate(lines, 1):
        record = TrialRecord.from_json(text)
        as_committed = record.to_dict()
        if "rungs" not in json.loads(text):
            del as_committed["rungs"]
        assert json.dumps(as_committed, allow_nan=True) == text, f"{path}:{number}"
        today = json.dumps(_with_rungs(json.loads(text)), allow_nan=True)
        assert record.to_json() == today, f"{path}:{number}"
        assert TrialRecord.from_json(today).to_json() == today, f"{path}:{number}"


def test_a_line_without_rungs_gets_its_last_rung_score():
    old = {"trial_id": "a", "kind": "search", "name": "t0", "number": 0, "state": "pruned",
           "metrics": {"ap_rung": 0.125, "rung": 2}}
    assert TrialRecord.from_dict(old).rungs == {2: 0.125}
    assert TrialRecord.from_dict({**old, "metrics": {}}).rungs == {}
    assert TrialRecord.from_dict({**old, "rungs": {"1": 0.5, "2": 0.25}}).rungs == {1: 0.5, 2: 0.25}


@pytest.mark.parametrize("name", ["nasfpn-60", "nasfpn-60-warm"])
def test_the_committed_search_reports_as_committed(tmp_path, name):
    from nasfpn.export.report import write_report

    committed = ROOT / "runs" / name
    run = tmp_path / name
    (run / "confirm").mkdir(parents=True)
    for file in ("manifest.json", "trials.jsonl", "promoted.jsonl", "warm_start.jsonl", "confirm/confirm.md"):
        shutil.copy(committed / file, run / file)
    written = write_report(run)
    for name in ("leaderboard", "trials", "best_genotype"):
        assert written[name].read_bytes() == (committed / written[name].name).read_bytes(), name


@pytest.mark.parametrize("config", [
    TrialConfig.baseline("fpn"),
    TrialConfig.sampled(3, {"cell.nodes[0].combine": "sum"}, "k3", "kind: genotype\n"),
    TrialConfig.unbuildable(4, {"cell.nodes[0].combine": "sum"}, "cell.nodes[0]: no inputs"),
    TrialConfig(kind="search", number=3, params={"cell.nodes[0].combine": "sum"}, key="k3", genotype="g",
                steps_factor=4),
    TrialConfig(kind="baseline", neck="fpn", steps_factor=4),
])
def test_a_trial_config_goes_to_ray_as_a_dict_and_back(config):
    as_ray_takes_it = json.loads(json.dumps(config.to_dict()))
    assert TrialConfig.from_dict(as_ray_takes_it) == config


def test_a_trial_config_has_the_keys_of_its_kind_and_its_name():
    assert TrialConfig.baseline("fpn").to_dict() == {"kind": "baseline", "neck": "fpn"}
    sampled = TrialConfig.sampled(3, {}, "k3", "g")
    assert sampled.to_dict() == {"kind": "search", "number": 3, "params": {}, "key": "k3", "genotype": "g"}
    assert TrialConfig.unbuildable(4, {}, "why").to_dict() == {"kind": "search", "number": 4, "params": {},
                                                                 "invalid": "why"}
    assert [TrialConfig.baseline("fpn").name, sampled.name] == ["fpn", "t3"]
    with pytest.raises(RecordError, match="kind"):
        TrialConfig.from_dict({"neck": "fpn"})


def test_a_report_always_carries_the_searchers_metric():
    reported = TrialReport(TrialMetrics(rung=1, ap_rung=0.2), step=10, seconds=1.5, node="n", pid=7).to_dict()
    assert reported["rung"] == 1 and reported["ap_rung"] == 0.2 and reported["final"] is False
    final = TrialReport(TrialMetrics(AP=0.3, neck_flops=5, rung=4), final=True).to_dict()
    assert "ap_rung" in final and final["ap_rung"] is None and final["AP"] == 0.3


def test_a_tune_result_reads_into_the_report_the_trial_sent():
    sent = TrialReport(TrialMetrics(AP=0.3, AP_rung=0.28, ap_rung=0.28, rung=4, neck_params=12, early_stopped=None),
                       final=True, seconds=9.0, node="n", pid=7, node_id="abc", details={"budget": "smoke"})
    result = {**sent.to_dict(), "trial_id": "x1", "training_iteration": 5, "done": False}  # Tune adds these
    received = TrialReport.from_dict(result)
    assert received.metrics == sent.metrics and received.final and not received.failed
    assert received.details == {"budget": "smoke", "trial_id": "x1", "training_iteration": 5, "done": False}
    assert TrialReport.from_dict(sent.to_dict()) == sent


def test_metrics_keep_the_reported_keys_in_the_record_order():
    metrics = TrialMetrics.from_dict({"rung": 2, "neck_flops": 10, "AP": 0.5, "other": "x", "APs": None})
    assert list(metrics.to_dict()) == ["AP", "rung", "neck_flops"]
    assert math.isnan(TrialRecord("a", "search", "t0", "pruned").ap)


def _line(**changes):
    line = {"trial_id": "id0", "kind": "search", "name": "t0", "number": 0, "state": "complete",
            "genotype": "g", "metrics": {"AP": 0.1}, "rungs": {"1": 0.1}, "ended": 1.0}
    return {**line, **changes}


@pytest.mark.parametrize("changes, field", [
    ({"trial_id": 3}, "trial_id"),
    ({"kind": "grid"}, "kind"),
    ({"name": None}, "name"),
    ({"state": "running"}, "state"),
    ({"metrics": [0.1]}, "metrics"),
    ({"metrics": {"AP": "high"}}, "AP"),
    ({"metrics": {"neck_flops": True}}, "neck_flops"),
    ({"genotype": None}, "genotype"),  # a completed sampled trial the report could not draw
    ({"number": "3"}, "number"),
    ({"rungs": {"one": 0.1}}, "rungs"),
    ({"rungs": {"1": "0.1"}}, "rungs"),
    ({"ended": "yesterday"}, "ended"),
])
def test_a_line_the_report_or_resume_cannot_use_is_refused_naming_the_field(changes, field):
    with pytest.raises(RecordError, match=field):
        TrialRecord.from_dict(_line(**changes))


def test_what_may_be_missing_is_missing():
    assert TrialRecord.from_dict(_line(genotype=None, state="failed")).genotype is None
    baseline = TrialRecord.from_dict({"trial_id": "b", "kind": "baseline", "name": "fpn", "state": "complete"})
    assert baseline.is_baseline and baseline.metrics == TrialMetrics() and baseline.rungs == {}
    assert baseline.seconds is None
    assert TrialRecord.from_dict(_line(started=1.0, ended=3.5)).seconds == 2.5
    assert TrialRecord.from_dict(_line(started=1.0, ended=3.5, duration=2.0)).seconds == 2.0
    with pytest.raises(RecordError, match="JSON"):
        TrialRecord.from_json('{"trial_id": "id1", "kind": "sea')
    with pytest.raises(RecordError, match="object"):
        TrialRecord.from_json("[1, 2]")
