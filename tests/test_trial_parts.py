"""The parts of a search that run inside Ray, exercised without Ray: the trainable's reports,
the progress callback's counts, and the baselines tables (the quick tier covers them here; the
Ray searches in test_search*.py run them for real)."""

import math
import runpy
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

import nasfpn
from nasfpn.dsl import to_yaml
from nasfpn.export.baselines import write_tables
from nasfpn.search import trainable
from nasfpn.search.progress import SearchProgress
from nasfpn.search.records import TrialConfig, TrialRecord, TrialReport


def _run(config: TrialConfig, session, monkeypatch) -> list[TrialReport]:
    reports = []
    monkeypatch.setattr(trainable.tune, "report", lambda result: reports.append(TrialReport.from_dict(result)))
    trainable.neck_trial(config.to_dict(), spec=session.spec)
    return reports


def test_a_sampled_trial_reports_each_rung_then_every_metric(smoke, monkeypatch):
    g = nasfpn.load_space("nasfpn_space").random_sample(0)
    reports = _run(TrialConfig.sampled(0, {}, "key", to_yaml(g)), smoke, monkeypatch)
    rungs, final = reports[:-1], reports[-1]
    assert [r.rung for r in rungs] == list(range(1, smoke.budget.evals))  # the last rung is the final report
    assert all(not r.final and 0 <= r.ap_rung <= 1 for r in rungs)
    assert final.final and not final.failed and final.rung == smoke.budget.evals
    assert 0 <= final.metrics.AP <= 1 and final.metrics.neck_params > 0 and final.metrics.neck_flops > 0
    assert final.details["budget"] == "smoke"


def test_a_baseline_reports_once_and_an_unbuildable_point_fails_with_its_reason(smoke, monkeypatch):
    (only,) = _run(TrialConfig.baseline("fpn"), smoke, monkeypatch)
    assert only.final and not only.failed and only.metrics.AP is not None
    (failed,) = _run(TrialConfig.unbuildable(3, {}, "cell.nodes[0].inputs: unknown feature 'n9'"), smoke,
                     monkeypatch)
    assert failed.final and failed.failed and "unknown feature 'n9'" in failed.error
    assert math.isnan(failed.ap_rung)


def _trial(trial_id: str, config: TrialConfig, result: dict | None):
    return SimpleNamespace(trial_id=trial_id, config=config.to_dict(), last_result=result)


def test_progress_counts_running_failed_and_the_best_of_each_kind():
    done = [TrialRecord.from_dict({"trial_id": "x", "kind": "baseline", "name": "fpn", "state": "complete",
                                   "metrics": {"AP": 0.30}}),
            TrialRecord.from_dict({"trial_id": "y", "kind": "search", "name": "t1", "number": 1, "state": "failed"})]
    started: dict[str, float] = {}
    progress = SearchProgress(done, total=4, started=started, show=False)
    assert progress.failed == 1 and progress.best["baseline"] == (0.30, "fpn") and progress.best["search"] is None
    sampled = TrialConfig.sampled(2, {}, "k", "genotype: ...")
    trial = _trial("a", sampled, None)
    progress.on_trial_start(0, [], trial)
    assert progress.running == {"a"} and "a" in started
    trial.last_result = {"final": True, "AP": 0.35, "rung": 2, "ap_rung": 0.3}
    progress.on_trial_complete(0, [], trial)
    assert progress.running == set() and progress.best["search"] == (0.35, "t2")
    progress.on_trial_error(0, [], _trial("b", sampled, None))
    assert progress.failed == 2 and progress.running == set()
    progress.on_experiment_end([])


def test_baselines_tables_rank_necks_by_mean_ap_with_the_seed_spread(tmp_path):
    def row(neck, seed, ap):
        return {"neck": neck, "seed": seed, "AP": ap, "AP50": ap, "AP75": ap, "APs": ap, "APm": ap, "APl": ap,
                "neck_params": 1_000_000, "neck_flops": 2_000_000_000, "model_params": 3, "model_flops": 4,
                "latency_ms": 5.0, "train_seconds": 6.0}

    write_tables([row("fpn", 0, 0.30), row("fpn", 1, 0.32), row("bifpn", 0, 0.40), row("bifpn", 1, 0.40)],
                 tmp_path, "synthetic, budget smoke, 2 seed(s)")
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[0] == "COCO AP (%) on synthetic, budget smoke, 2 seed(s); mean ± std over seeds."
    assert lines[4].startswith("| bifpn | 40.0 ± 0.0 |") and lines[5].startswith("| fpn | 31.0 ± 1.4 |")
    assert lines[5].endswith("| 1.000 | 2.000 | 5.0 | 6 |")
    table = pd.read_csv(tmp_path / "table.csv")
    assert list(table["neck"]) == ["bifpn", "fpn"] and list(table["seeds"]) == [2, 2]
    assert (tmp_path / "ap_vs_flops.png").stat().st_size > 0


def test_python_dash_m_nasfpn_is_the_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["nasfpn", "validate", "fpn"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("nasfpn", run_name="__main__")
    assert exit_.value.code == 0 and "fpn" in capsys.readouterr().out


def test_trials_read_data_and_caches_from_paths_every_node_sees(monkeypatch, tmp_path):
    from nasfpn.search.runner import SearchOptions, _cache_for, _loader_workers

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("NASFPN_CACHE", str(tmp_path / "mine"))
    assert _cache_for(SearchOptions(space="s.yaml")) == str(tmp_path / "mine")  # embedded Ray: the driver's cache
    assert _cache_for(SearchOptions(space="s.yaml", cache="/shared/c", address="ray://h:10001")) == "/shared/c"
    shared = SearchOptions(space="s.yaml", address="ray://h:10001", storage_path="/nfs/tune")
    assert _cache_for(shared) == "/nfs/tune/cache"
    assert _cache_for(SearchOptions(space="s.yaml", address="ray://h:10001", storage_path="s3://b/p")) is None
    assert _loader_workers(SearchOptions(space="s.yaml", cpus_per_trial=1)) == 0
    assert _loader_workers(SearchOptions(space="s.yaml", cpus_per_trial=4)) == 3
    assert _loader_workers(SearchOptions(space="s.yaml", cpus_per_trial=4, workers=1)) == 1
