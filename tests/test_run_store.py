"""The runs/NAME/ store on its own: what a secret looks like once written down, the trial log
read line by line (torn and garbage lines named, never fatal), appends after a torn line."""

from __future__ import annotations

import json

import pytest

from nasfpn.search.records import TrialRecord
from nasfpn.search.store import append_trial, read_trial_log, redact, redact_argv


@pytest.mark.parametrize("url, written", [
    ("postgresql://nasfpn:s3cret@db.internal:5432/nasfpn", "postgresql://nasfpn:***@db.internal:5432/nasfpn"),
    ("postgresql+psycopg2://u@h/db?password=s3cret&sslmode=require",
     "postgresql+psycopg2://u@h/db?password=***&sslmode=require"),
    ("mysql://u@h/db?api_token=abc&secret_key=def", "mysql://u@h/db?api_token=***&secret_key=***"),
    ("sqlite:////home/me/runs/x/study.db", "sqlite:////home/me/runs/x/study.db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_redact_removes_every_secret_and_nothing_else(url, written):
    assert redact(url) == written


def test_a_command_line_is_written_down_redacted():
    argv = ["nasfpn", "search", "--storage", "postgresql://u:pw1@h/db", "--storage=postgresql://u:pw2@h/db",
            "--name", "x"]
    assert redact_argv(argv) == ["nasfpn", "search", "--storage", "postgresql://u:***@h/db",
                                 "--storage=postgresql://u:***@h/db", "--name", "x"]


def _record(i, **extra):
    return {"trial_id": f"id{i}", "kind": "search", "name": f"t{i}", "number": i, "state": "complete",
            "metrics": {"AP": 0.1 * i}, "ended": float(i), **extra}


def _appended(run_dir, i, **extra):
    append_trial(run_dir, TrialRecord.from_dict(_record(i, **extra)))


def test_the_trial_log_skips_and_names_what_it_cannot_read(tmp_path):
    lines = [json.dumps(_record(0, genotype="g")), "not json", json.dumps({"trial_id": 3}),
             json.dumps(_record(1, genotype="g")), json.dumps(_record(3)),  # complete, but no genotype
             json.dumps(_record(4, genotype="g", metrics={"AP": "high"})), json.dumps(_record(2))[:30]]
    (tmp_path / "trials.jsonl").write_text("\n".join(lines))
    log = read_trial_log(tmp_path)
    assert [r.name for r in log.records] == ["t0", "t1"]
    assert log.unreadable == [2, 3, 5, 6, 7] and log.torn_last
    assert log.warnings() == [f"{tmp_path / 'trials.jsonl'}:7: the last line is incomplete (the run was killed "
                              "while writing it); the complete trials are reported",
                              f"{tmp_path / 'trials.jsonl'}: 4 unreadable line(s) skipped (lines 2, 3, 5, 6)"]


def test_an_append_after_a_torn_line_starts_a_line_of_its_own(tmp_path):
    _appended(tmp_path, 0, state="pruned")
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"trial_id": "id1", "kind": "sea')  # killed mid-write
    _appended(tmp_path, 2, state="failed")
    log = read_trial_log(tmp_path)
    assert [r.name for r in log.records] == ["t0", "t2"]
    assert log.unreadable == [2] and not log.torn_last


def test_the_last_record_of_a_trial_wins_and_order_is_by_end(tmp_path):
    for i, extra in ((1, {"state": "failed"}), (0, {"state": "pruned"}), (1, {"state": "pruned", "ended": 5.0})):
        _appended(tmp_path, i, **extra)
    assert [(r.name, r.state) for r in read_trial_log(tmp_path).records] == [("t0", "pruned"), ("t1", "pruned")]


@pytest.mark.parametrize("entry", [{"file": 7}, {"file": ["a"]}, {"file": "../../elsewhere.yaml"}, {"path": 3}])
def test_a_damaged_space_entry_of_the_manifest_is_one_line(tmp_path, entry):
    from nasfpn.search.errors import SearchError
    from nasfpn.search.store import space_file

    with pytest.raises(SearchError, match=r"manifest.json: damaged: 'space.file'"):
        space_file(tmp_path, {"space": entry})


def test_the_report_places_on_the_plot_only_trials_that_measured_their_cost(tmp_path):
    from nasfpn.export.report import write_report

    for i, extra in enumerate([{"neck_flops": 2_000_000}, {}]):
        append_trial(tmp_path, TrialRecord.from_dict(_record(i, kind="baseline", name=f"b{i}", state="complete",
                                                             metrics={"AP": 0.3 + i / 10, **extra})))
    out = write_report(tmp_path)
    assert "| b1 |" in (tmp_path / "leaderboard.md").read_text() and out["pareto"].stat().st_size > 0
