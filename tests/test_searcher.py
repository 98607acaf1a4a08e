"""The searcher without Ray: baselines first, what Optuna is told about finished, early-stopped and
failed trials, graph duplicates, how a resumed search rebuilds its state from the study and the
trial records, and the rung halving that stops trials early."""

import json
import random

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

import nasfpn
from nasfpn.search.asha import RungHalving
from nasfpn.search.records import TrialReport
from nasfpn.search.sampling import OptunaSuggester, make_sampler, option_label
from nasfpn.search.searcher import NeckSearcher
from nasfpn.search.store import append_trial, read_trials

State = optuna.trial.TrialState


@pytest.fixture
def searcher(tmp_path):
    space = nasfpn.load_space("nasfpn_space")
    s = NeckSearcher(space, f"sqlite:///{tmp_path / 'study.db'}", "test", "tpe", 0, ["ap"], str(tmp_path),
                     run_id="this-run")
    assert s.resume([], ["fpn", "bifpn"], trials=10) == 12
    return s


def test_baselines_come_first_then_sampled_genotypes(searcher):
    assert searcher.suggest("a") == {"kind": "baseline", "neck": "fpn"}
    assert searcher.suggest("b") == {"kind": "baseline", "neck": "bifpn"}
    config = searcher.suggest("c")
    assert config["kind"] == "search" and config["number"] == 0
    g = nasfpn.from_yaml(config["genotype"])
    assert g.name == "nasfpn_space-t0" and len(g.cell.nodes) == 7
    searcher.on_trial_complete("a", {"final": True, "AP": 0.3})  # baselines never reach Optuna
    assert searcher.study.trials[0].state == State.RUNNING


def test_what_optuna_is_told(searcher):
    ids = [f"t{i}" for i in range(5)]
    for i in ids[:2]:
        searcher.suggest(i)  # the baselines
    configs = {i: searcher.suggest(i) for i in ids[2:]}
    done, pruned, failed = ids[2:]
    searcher.on_trial_result(pruned, {"rung": 1, "ap_rung": 0.05, "final": False})
    searcher.on_trial_result(done, {"rung": 1, "ap_rung": 0.10, "final": False})
    searcher.on_trial_complete(done, {"final": True, "AP": 0.25, "neck_flops": 1e9})
    searcher.on_trial_complete(pruned, {"rung": 1, "ap_rung": 0.05, "final": False})  # ASHA stopped it
    searcher.on_trial_complete(failed, {"final": True, "failed": True, "error": "NaN loss"})
    by_number = {t.number: t for t in searcher.study.trials}
    assert by_number[configs[done]["number"]].state == State.COMPLETE
    assert by_number[configs[done]["number"]].value == pytest.approx(0.25)
    early = by_number[configs[pruned]["number"]]
    assert early.state == State.PRUNED and early.intermediate_values == {1: pytest.approx(0.05)}
    assert by_number[configs[failed]["number"]].state == State.FAIL


def test_multi_objective_reports_ap_and_flops(tmp_path):
    space = nasfpn.load_space("nasfpn_space")
    s = NeckSearcher(space, f"sqlite:///{tmp_path / 'mo.db'}", "mo", "nsga2", 0, ["ap", "flops"], str(tmp_path))
    s.resume([], [], trials=5)
    s.suggest("x")
    s.on_trial_complete("x", {"final": True, "AP": 0.2, "neck_flops": 3e9})
    trial = s.study.trials[0]
    assert trial.values == [pytest.approx(0.2), pytest.approx(3e9)]
    assert [d.name for d in s.study.directions] == ["MAXIMIZE", "MINIMIZE"]


def test_a_graph_already_trained_is_not_trained_again(tmp_path):
    # A space with one real choice whose two options build the same graph: sum is symmetric.
    text = """
kind: space
levels: [P3, P4, P5, P6, P7]
channels: 16
defaults: {post: []}
cell:
  nodes:
    - {level: P4, inputs: {choice: [[P4, P5], [P5, P4]]}}
    - {level: P3, inputs: [P3, n0], output: true}
    - {level: P4, inputs: [n0], output: true}
    - {level: P5, inputs: [P5], output: true}
    - {level: P6, inputs: [P6], output: true}
    - {level: P7, inputs: [P7], output: true}
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    space = nasfpn.load_space(path)
    s = NeckSearcher(space, f"sqlite:///{tmp_path / 'd.db'}", "d", "random", 0, ["ap"], str(tmp_path))
    s.resume([], [], trials=10)
    first = s.suggest("a")
    # while "a" runs, every other point is the same graph: they wait for it, none goes to Tune
    assert s.suggest("b") == Searcher.FINISHED
    s.on_trial_complete("a", {"final": True, "AP": 0.4})
    # afterwards each is told the earlier outcome at once
    assert s.suggest("c") == Searcher.FINISHED
    duplicates = [json.loads(line) for line in (tmp_path / "duplicates.jsonl").read_text().splitlines()]
    assert len(duplicates) == len(s.study.trials) - 1
    assert all(d["key"] == first["key"] for d in duplicates)
    assert all(t.state == State.COMPLETE and t.value == pytest.approx(0.4) for t in s.study.trials)


def test_a_resumed_searcher_takes_the_study_as_the_record_of_what_finished(searcher, tmp_path):
    """A search killed by SIGKILL: one trial recorded and told, one recorded but not yet told,
    one in flight, one asked but never handed to Tune; another run's trial shares the study."""
    configs = {i: searcher.suggest(i) for i in "abcde"}  # a, b: baselines; c, d, e: sampled
    searcher.on_trial_complete("a", {"final": True, "AP": 0.30, "rung": 2, "ap_rung": 0.3})
    searcher.on_trial_complete("c", {"final": True, "AP": 0.25, "neck_flops": 1e9})
    finished = TrialReport.from_dict({"final": True, "AP": 0.21})
    append_trial(tmp_path, searcher._record("d", searcher.trials["d"], finished, error=False))
    orphan = searcher.study.ask()
    orphan.set_user_attr("nasfpn_run", "this-run")
    other = searcher.study.ask()
    other.set_user_attr("nasfpn_run", "another-run")
    records = read_trials(tmp_path)
    assert [r.name for r in records] == ["fpn", f"t{configs['c']['number']}", f"t{configs['d']['number']}"]

    fresh = NeckSearcher(searcher.space, searcher.storage, "test", "tpe", 0, ["ap"], str(tmp_path), run_id="this-run")
    assert fresh.resume(records, ["fpn", "bifpn"], trials=10) == 1 + 8  # bifpn, and 10 - 2 sampled
    by_number = {t.number: t for t in fresh.study.trials}
    assert by_number[configs["c"]["number"]].value == pytest.approx(0.25)
    assert by_number[configs["d"]["number"]].state == State.COMPLETE  # told from its record
    assert by_number[configs["d"]["number"]].value == pytest.approx(0.21)
    assert by_number[configs["e"]["number"]].state == State.FAIL      # interrupted
    assert by_number[orphan.number].state == State.FAIL
    assert by_number[other.number].state == State.RUNNING            # not this run's to judge
    assert fresh.suggest("f") == {"kind": "baseline", "neck": "bifpn"}
    retry = fresh.suggest("g")  # the interrupted point is trained again first
    assert retry["params"] == configs["e"]["params"] and retry["number"] > other.number
    retries = sorted(t.user_attrs["retry_of"] for t in fresh.study.trials if "retry_of" in t.user_attrs)
    assert retries == [configs["e"]["number"], orphan.number]


def test_a_finished_trial_told_twice_is_not_an_error(searcher):
    for i in "abc":
        searcher.suggest(i)
    searcher.on_trial_complete("c", {"final": True, "AP": 0.2})
    searcher._tell(searcher.trials["c"].number, "COMPLETE", [0.2])  # e.g. again after a resume
    searcher.on_trial_result("c", {"rung": 1, "ap_rung": 0.1, "final": False})
    assert searcher.study.trials[0].state == State.COMPLETE


class _Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def test_rung_halving_decides_as_rays_asha():
    ray_asha = ASHAScheduler(time_attr="rung", metric="ap_rung", mode="max", max_t=4, grace_period=1,
                             reduction_factor=2)
    ours = RungHalving(4)
    rng = random.Random(0)
    decisions = []
    for i in range(60):
        trial = _Trial(f"t{i}")
        ray_asha.on_trial_add(None, trial)
        for rung in (1, 2, 3):
            result = {"rung": rung, "ap_rung": rng.random()}
            theirs = ray_asha.on_trial_result(None, trial, result)
            assert ours.on_trial_result(None, trial, result) == theirs, (i, rung)
            decisions.append(theirs)
            if theirs == TrialScheduler.STOP:
                break
    assert decisions.count(TrialScheduler.STOP) > 10 and decisions.count(TrialScheduler.CONTINUE) > 10


def test_rung_halving_counts_the_trials_a_run_already_holds():
    fresh, seeded = RungHalving(4), RungHalving(4)
    seeded.seed("before-1", {1: 0.9, 2: 0.9})
    seeded.seed("before-2", {"1": 0.8})
    assert fresh.decide("t", 1, 0.5) == TrialScheduler.CONTINUE
    assert seeded.decide("t", 1, 0.5) == TrialScheduler.STOP


def test_list_valued_options_are_asked_by_label():
    study = optuna.create_study(sampler=make_sampler("random", 0, 1))
    trial = study.ask()
    value = OptunaSuggester(trial).categorical("post", [("relu", "conv3x3", "bn"), ("swish", "sepconv3x3", "bn")])
    assert value in [("relu", "conv3x3", "bn"), ("swish", "sepconv3x3", "bn")]
    assert trial.params["post"] == option_label(value)
