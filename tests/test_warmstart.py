"""Warm start without Ray: a zoo neck that is a point of the space is told to the study once its
baseline trial is recorded, exactly once, also when the search was killed in between."""

import optuna
import pytest

import nasfpn
from nasfpn.compile.plan import graph_key
from nasfpn.search.records import COMPLETE, TrialRecord
from nasfpn.search.searcher import NeckSearcher
from nasfpn.search.store import WARM_START, append_trial, read_trials
from nasfpn.search.warmstart import zoo_points

SPACE = nasfpn.load_space("nasfpn_space")


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _searcher(tmp_path, sampler="tpe"):
    return NeckSearcher(SPACE, f"sqlite:///{tmp_path / 'study.db'}", "warm", sampler, 0, ["ap"], str(tmp_path),
                        warm_zoo=zoo_points(SPACE))


def _told(searcher):
    return [t for t in searcher.study.trials if "warm_start" in t.user_attrs]


def test_a_zoo_point_is_told_when_its_baseline_finishes_and_never_twice(tmp_path):
    searcher = _searcher(tmp_path)
    assert searcher.resume([], ["nasfpn-proxy"], trials=1) == 2
    config = searcher.suggest("a")
    assert config == {"kind": "baseline", "neck": "nasfpn-proxy"}
    searcher.on_trial_complete("a", {"final": True, "AP": 0.31, "rung": 2, "ap_rung": 0.3})
    (told,) = _told(searcher)
    assert told.user_attrs["warm_start"] == "zoo:nasfpn-proxy"
    assert told.state == optuna.trial.TrialState.COMPLETE and told.value == pytest.approx(0.31)
    assert told.intermediate_values == {2: 0.3}
    assert graph_key(nasfpn.load("nasfpn-proxy")) in searcher.outcomes  # a sampled duplicate is not retrained
    assert (tmp_path / WARM_START).read_text().count("\n") == 1
    again = _searcher(tmp_path)  # resumed: the record is there, the study already holds its point
    again.resume(read_trials(tmp_path), ["nasfpn-proxy"], trials=1)
    assert len(_told(again)) == 1
    assert again.outcomes[graph_key(nasfpn.load("nasfpn-proxy"))] == ("COMPLETE", [pytest.approx(0.31)])


def test_a_baseline_recorded_before_a_kill_is_told_on_resume(tmp_path):
    record = TrialRecord(trial_id="x", kind="baseline", name="nasfpn-proxy", state=COMPLETE,
                         metrics=nasfpn.search.records.TrialMetrics(AP=0.2), rungs={2: 0.19})
    append_trial(tmp_path, record)
    searcher = _searcher(tmp_path, sampler="evolution")
    assert searcher.resume(read_trials(tmp_path), ["nasfpn-proxy"], trials=1) == 1  # the baseline is done
    (told,) = _told(searcher)
    assert told.number == 0 and told.value == pytest.approx(0.2)  # the evolution's first member


def test_a_failed_baseline_tells_nothing(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.resume([], ["nasfpn-proxy"], trials=1)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"final": True, "failed": True, "error": "boom", "rung": 2,
                                     "ap_rung": float("nan")})
    assert _told(searcher) == []
