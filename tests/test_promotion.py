"""Promotion to the longer rung: once every sampled trial has finished, the best that completed
every rung and the best baseline train again with more steps; the study is not told, the
leaderboard ranks them first, and a resumed search promotes only what is left."""

import optuna
import pytest

import nasfpn
from nasfpn.export.report import leaderboard, ranked
from nasfpn.search.records import COMPLETE, PRUNED, TrialMetrics, TrialRecord
from nasfpn.search.searcher import NeckSearcher, promotions_left
from nasfpn.search.store import read_promoted, read_trials

SPACE = nasfpn.load_space("nasfpn_space")


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _searcher(tmp_path):
    return NeckSearcher(SPACE, f"sqlite:///{tmp_path / 'study.db'}", "promo", "random", 0, ["ap"], str(tmp_path),
                        promote=2, promote_factor=4)


def _final(ap):
    return {"final": True, "AP": ap, "rung": 2, "ap_rung": ap}


def test_the_best_survivors_and_the_best_baseline_train_again_once_sampling_is_done(tmp_path):
    searcher = _searcher(tmp_path)
    assert searcher.resume([], ["fpn", "bifpn"], trials=4) == 2 + 4 + 3
    for name, ap in (("fpn", 0.30), ("bifpn", 0.28)):
        tid = f"b-{name}"
        assert searcher.suggest(tid)["neck"] == name
        searcher.on_trial_complete(tid, _final(ap))
    sampled = {f"s{i}": searcher.suggest(f"s{i}")["number"] for i in range(4)}
    outcomes = {"s0": _final(0.20), "s1": {"rung": 1, "ap_rung": 0.5, "final": False}, "s2": _final(0.25)}
    for tid, result in outcomes.items():
        searcher.on_trial_complete(tid, result)
    assert searcher.suggest("p0") is None  # s3 still runs: the ranking is not known yet
    searcher.on_trial_complete("s3", _final(0.10))
    configs = [searcher.suggest(f"p{i}") for i in range(3)]
    assert [c.get("neck") or c["number"] for c in configs] == ["fpn", sampled["s2"], sampled["s0"]]
    assert all(c["steps_factor"] == 4 for c in configs)  # a pruned trial (s1) never is, whatever its score
    study_size = len(searcher.study.trials)
    for i, ap in enumerate((0.40, 0.45, 0.35)):
        searcher.on_trial_complete(f"p{i}", _final(ap))
    assert searcher.suggest("done") == searcher.FINISHED
    assert len(searcher.study.trials) == study_size  # the study scores one fidelity
    promoted = read_promoted(tmp_path)
    assert [r.name for r in promoted] == ["fpn", f"t{sampled['s2']}", f"t{sampled['s0']}"]
    assert len(read_trials(tmp_path)) == 6  # trials.jsonl holds the budget's trials only

    order = [r.name for r in ranked(read_trials(tmp_path), promoted)]
    assert order[:3] == [f"t{sampled['s2']}", "fpn", f"t{sampled['s0']}"]  # by AP at 4x steps
    board = leaderboard(read_trials(tmp_path), promoted, 4)
    assert "trained again with 4x the steps" in board and "AP x4" in board
    row = next(line for line in board.splitlines() if line.startswith(f"| 1 | t{sampled['s2']}"))
    assert "| 45.0 | +5.0 |" in row  # against fpn, also at 4x


def test_a_resumed_search_promotes_what_is_left(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.resume([], ["fpn"], trials=2)
    assert searcher.suggest("b")["neck"] == "fpn"
    searcher.on_trial_complete("b", _final(0.3))
    for i, ap in enumerate((0.2, 0.1)):
        searcher.suggest(f"s{i}")
        searcher.on_trial_complete(f"s{i}", _final(ap))
    searcher.suggest("p0")
    searcher.on_trial_complete("p0", _final(0.4))  # fpn promoted, then the search is killed
    again = _searcher(tmp_path)
    assert again.resume(read_trials(tmp_path), ["fpn"], trials=2) == 2
    left = [again.suggest(f"q{i}") for i in range(2)]
    assert [c["number"] for c in left] == [0, 1] and again.suggest("q2") == again.FINISHED


def test_nothing_is_promoted_without_a_trial_that_completed_every_rung():
    pruned = TrialRecord("a", "search", "t0", PRUNED, number=0, metrics=TrialMetrics(AP=None))
    base = TrialRecord("b", "baseline", "fpn", COMPLETE, metrics=TrialMetrics(AP=0.3))
    assert promotions_left([pruned, base], [], 3, 4) == []
    assert promotions_left([pruned, base], [], 0, 4) == []
