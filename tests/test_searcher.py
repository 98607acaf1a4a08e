"""The searcher without Ray: baselines first, what Optuna is told about finished, early-stopped and
failed trials, graph duplicates, and its saved state across a restore."""

import json

import optuna
import pytest
from ray.tune.search import Searcher

import nasfpn
from nasfpn.search.searcher import NeckSearcher
from nasfpn.search.sampling import OptunaSuggester, make_sampler, option_label

State = optuna.trial.TrialState


@pytest.fixture
def searcher(tmp_path):
    space = nasfpn.load_space("nasfpn_space")
    return NeckSearcher(space, f"sqlite:///{tmp_path / 'study.db'}", "test", "tpe", 0, ["ap"],
                        ["fpn", "bifpn"], str(tmp_path))


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
    s = NeckSearcher(space, f"sqlite:///{tmp_path / 'mo.db'}", "mo", "nsga2", 0, ["ap", "flops"], [], str(tmp_path))
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
    s = NeckSearcher(space, f"sqlite:///{tmp_path / 'd.db'}", "d", "random", 0, ["ap"], [], str(tmp_path))
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


def test_state_survives_a_restore_and_reopens_the_study(searcher, tmp_path):
    searcher.suggest("a")
    searcher.suggest("b")
    config = searcher.suggest("c")
    searcher.save(str(tmp_path / "state.pkl"))
    orphan = searcher.study.ask()  # asked, never handed to Tune: the process died here
    fresh = NeckSearcher(searcher.space, searcher.storage, "test", "tpe", 0, ["ap"], [], str(tmp_path))
    fresh.restore(str(tmp_path / "state.pkl"))
    assert fresh.trials["c"] == config and fresh.queue == []
    fresh.on_trial_complete("c", {"final": True, "AP": 0.2})
    states = {t.number: t.state for t in fresh.study.trials}
    assert states[config["number"]] == State.COMPLETE and states[orphan.number] == State.FAIL


def test_list_valued_options_are_asked_by_label():
    study = optuna.create_study(sampler=make_sampler("random", 0, 1))
    trial = study.ask()
    value = OptunaSuggester(trial).categorical("post", [("relu", "conv3x3", "bn"), ("swish", "sepconv3x3", "bn")])
    assert value in [("relu", "conv3x3", "bn"), ("swish", "sepconv3x3", "bn")]
    assert trial.params["post"] == option_label(value)
