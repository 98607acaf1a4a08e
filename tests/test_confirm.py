"""The confirmation report's statistics: paired differences seed by seed, a 95% interval from
Student's t, and the verdict's rule (an interval above zero at no more FLOPs than the best
baseline)."""

import math
import socket

import pytest

from nasfpn.export.confirm import Paired, paired_difference, t975, verdict, write_confirmation


def _rows(neck, aps, flops=1e9):
    return [{"neck": neck, "seed": s, "AP": ap / 100, "AP50": ap / 50, "AP75": ap / 100, "APs": ap / 200,
             "APm": ap / 100, "APl": ap / 100, "neck_params": 1000, "neck_flops": flops, "model_params": 2000,
             "model_flops": 2 * flops, "latency_ms": 1.0, "train_seconds": 1.0} for s, ap in enumerate(aps)]


def test_the_paired_difference_and_its_interval():
    rows = _rows("cell", [31.0, 32.0, 33.0]) + _rows("fpn", [30.0, 30.0, 30.0])
    p = paired_difference(rows, "cell", "fpn")
    half = 4.303 * 1.0 / math.sqrt(3)  # the differences 1, 2, 3: sd 1
    assert (p.seeds, p.mean) == (3, pytest.approx(2.0))
    assert (p.low, p.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert t975(2) == 4.303 and t975(1000) == 1.96
    single = paired_difference(_rows("cell", [31.0]) + _rows("fpn", [30.0]), "cell", "fpn")
    assert single.seeds == 1 and math.isnan(single.low)


def test_the_verdict_needs_an_interval_above_zero_at_no_more_flops():
    win = Paired("cell", "fpn", 3, 1.5, 0.4, 2.6)
    assert verdict([win], {"cell": 1e9, "fpn": 1e9}).startswith("The search beat the hand-designed necks: cell")
    assert "did not beat" in verdict([win], {"cell": 2e9, "fpn": 1e9})  # better, but at twice the FLOPs
    assert "did not beat" in verdict([Paired("cell", "fpn", 3, 1.5, -0.2, 3.2)], {"cell": 1e9, "fpn": 1e9})


def test_the_report_ranks_and_compares_against_the_best_baseline(tmp_path):
    rows = (_rows("cell", [36.8, 37.4, 37.0], flops=0.9e9) + _rows("fpn", [35.0, 35.5, 35.0])
            + _rows("bifpn", [27.0, 27.0, 27.0]))
    sentence = write_confirmation(rows, ["cell"], ["bifpn", "fpn"], tmp_path, "synthetic, budget full, 3 seed(s)")
    assert sentence.startswith("The search beat the hand-designed necks: cell scores +1.9 AP over fpn")
    md = (tmp_path / "confirm.md").read_text()
    assert "| cell | searched | 37.1 ± 0.3 |" in md and "Δ fpn (95% CI)" in md
    import pandas as pd
    table = pd.read_csv(tmp_path / "confirm.csv")
    assert list(table["neck"]) == ["cell", "fpn", "bifpn"] and table["diff_mean"].notna().sum() == 1


def test_cluster_options_that_cannot_work_are_one_line(tmp_path, capsys, monkeypatch):
    from nasfpn.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["baselines", "--budget", "smoke", "--gpus-per-trial", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--gpus-per-trial needs a cluster (--address)" in capsys.readouterr().err
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there
    assert main(["calibrate", "--budget", "smoke", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


def test_a_device_for_runs_on_a_cluster_is_refused(monkeypatch):
    import argparse

    from nasfpn.cli.common import UserError, remote_runs

    args = argparse.Namespace(address="127.0.0.1:6379", gpus_per_trial=0, cpus_per_trial=1, device="cuda:1")
    with pytest.raises(UserError, match="take GPUs with --gpus-per-trial"):
        remote_runs(args)


def test_runs_are_reused_from_another_folder_only_for_the_same_genotype_and_scoring(tmp_path, capsys):
    import dataclasses

    from nasfpn.cli.common import UserError
    from nasfpn.cli.scoring import Scoring, scored_runs
    from nasfpn.dsl import load
    from nasfpn.dsl.budget import read_budget
    from nasfpn.export.baselines import TABLE_FIELDS

    trained = []

    def train(jobs):
        for index, (g, seed) in enumerate(jobs):
            trained.append((g.name, seed))
            metrics = {k: 1.0 for k in TABLE_FIELDS} | {"neck": g.name, "seed": seed, "AP": 0.3 + seed / 100}
            yield index, {"metrics": metrics | {"budget_config": budget.as_dict(), "data": "synthetic",
                                                "precision": "fp32", "backbone_fingerprint": "abc"}}

    budget = read_budget("full")
    scoring = Scoring(budget, "synthetic", "abc", "fp32", train)
    fpn, bifpn = load("fpn"), load("bifpn")
    scored_runs([fpn, bifpn], 1, scoring, tmp_path / "calibration" / "full")  # a calibration's reference runs
    assert trained == [("fpn", 0), ("bifpn", 0)]
    trained.clear()
    rows = scored_runs([fpn, bifpn], 2, scoring, tmp_path / "confirm", [str(tmp_path / "calibration")])
    assert trained == [("fpn", 1), ("bifpn", 1)]  # the seeds 0 were reused
    assert "fpn seed 0: reused from" in capsys.readouterr().out
    assert (tmp_path / "confirm" / "runs" / "fpn-s0" / "metrics.json").exists() and len(rows) == 4
    assert rows[0]["AP"] == 0.3 and rows[1]["AP"] == 0.31
    trained.clear()
    renamed = dataclasses.replace(bifpn, name="fpn")  # the name of a stored run, another genotype
    scored_runs([renamed], 1, scoring, tmp_path / "impostor", [str(tmp_path / "calibration")])
    assert trained == [("fpn", 0)]
    trained.clear()
    other = Scoring(dataclasses.replace(budget, steps=7), "synthetic", "abc", "fp32", train)
    scored_runs([bifpn], 1, other, tmp_path / "elsewhere", [str(tmp_path / "calibration")])
    assert trained == [("bifpn", 0)]  # trained with another budget: not the same run
    with pytest.raises(UserError, match="--reuse .*nowhere: no such directory"):
        scored_runs([fpn], 1, scoring, tmp_path / "x", [str(tmp_path / "nowhere")])
