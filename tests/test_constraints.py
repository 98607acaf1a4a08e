"""--max-flops / --max-params: the neck's cost judged from the genotype when it is sampled equals
what a trial then measures and what `show` prints; an infeasible point is never handed to Tune,
is told to Optuna as FAIL with its reason, and is logged in infeasible.jsonl."""

import json

import optuna
import pytest
from ray.tune.search import Searcher

import nasfpn
from nasfpn.cli import main
from nasfpn.cli.common import human
from nasfpn.dsl.budget import read_budget
from nasfpn.proxy.neck_cost import trial_neck_cost as neck_cost
from nasfpn.proxy.train import run_trial
from nasfpn.search.constraints import NeckLimits
from nasfpn.search.searcher import NeckSearcher

SPACE = nasfpn.load_space("nasfpn_space")


def test_the_cost_at_sample_time_is_what_a_trial_measures_and_show_prints(smoke, capsys):
    for name in ("fpn", "nasfpn-proxy"):
        g = nasfpn.load(name)
        cost = neck_cost(g, smoke.budget)
        m = run_trial(g, smoke, seed=0, progress=False)
        assert (cost["neck_flops"], cost["neck_params"]) == (m["neck_flops"], m["neck_params"]), name
        capsys.readouterr()
        assert main(["show", name, "--image-size", str(smoke.frame.square), "--in-channels", "64,128,256",
                     "--channels", str(smoke.budget.width)]) == 0
        shown = capsys.readouterr().out.splitlines()[-1]
        assert f"params {human(cost['neck_params'])}, FLOPs {human(cost['neck_flops'])}" in shown, shown


def _searcher(tmp_path, limits):
    return NeckSearcher(SPACE, f"sqlite:///{tmp_path / 'study.db'}", "c", "random", 0, ["ap"], str(tmp_path),
                        constraint=limits)


def test_infeasible_points_are_never_trained_and_told_as_failed(tmp_path):
    budget = read_budget("smoke")
    costs = [neck_cost(SPACE.random_sample(seed), budget)["neck_flops"] for seed in range(12)]
    limit = sorted(costs)[len(costs) // 2]  # about half the space fits
    searcher = _searcher(tmp_path, NeckLimits(budget, max_flops=limit))
    assert searcher.resume([], [], trials=4) == 4
    handed = [searcher.suggest(f"t{i}") for i in range(4)]
    assert all(c["kind"] == "search" for c in handed)
    for config in handed:
        assert neck_cost(nasfpn.from_yaml(config["genotype"]), budget)["neck_flops"] <= limit
    skipped = [t for t in searcher.study.trials if "infeasible" in t.user_attrs]
    assert skipped and all(t.state == optuna.trial.TrialState.FAIL for t in skipped)
    assert all("> --max-flops" in t.user_attrs["infeasible"] for t in skipped)
    logged = [json.loads(line) for line in (tmp_path / "infeasible.jsonl").read_text().splitlines()]
    assert [r["number"] for r in logged] == [t.number for t in skipped]


def test_a_limit_nothing_fits_ends_the_search_instead_of_asking_forever(tmp_path):
    searcher = _searcher(tmp_path, NeckLimits(read_budget("smoke"), max_params=10))
    assert searcher.resume([], [], trials=3) == 3
    assert searcher.suggest("t0") == Searcher.FINISHED and searcher.exhausted
    assert "neck params" in searcher.study.trials[0].user_attrs["infeasible"]


@pytest.mark.parametrize("text, value", [("3e7", 3e7), ("2.5M", 2.5e6), ("0.1g", 1e8), ("500", 500.0)])
def test_limits_read_plain_numbers_and_units(text, value):
    from nasfpn.cli.common import count

    assert count(text) == pytest.approx(value)


def test_a_bad_limit_is_one_line(capsys):
    assert pytest.raises(SystemExit, main, ["search", "--space", "x.yaml", "--max-flops", "lots"]).value.code == 2
    assert "expected a number such as 3e7" in capsys.readouterr().err
