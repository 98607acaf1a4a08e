"""The regularized-evolution sampler: random until the population is full, then children that
differ from a tournament's winner in exactly one choice; the oldest member leaves first; the same
seed and history give the same children, resumed or not."""

import optuna
import pytest

import nasfpn
from nasfpn.search.evolution import RegularizedEvolutionSampler
from nasfpn.search.sampling import make_sampler, sample_genotype

SPACE = nasfpn.load_space("nasfpn_space")


def _score(params: dict) -> float:
    """A made-up fitness: how many merges are `sum`, and a little of where node 0 reads from."""
    return sum(v == "sum" for v in params.values()) + 0.1 * params["cell.nodes[0].inputs[0]"]


def _run(sampler, trials: int, study=None, storage=None):
    study = study or optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name="evo",
                                         load_if_exists=True)
    for _ in range(trials):
        trial = study.ask()
        sample_genotype(SPACE, trial)
        study.tell(trial, _score(trial.params))
    return study


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_child_differs_from_its_parent_in_exactly_one_choice():
    sampler = RegularizedEvolutionSampler(population=6, tournament=3, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    children = 0
    for _ in range(30):
        trial = study.ask()
        sample_genotype(SPACE, trial)
        plan = sampler.plan(study, trial.number)
        if trial.number < 6:
            assert plan is None  # the first population is random
        else:
            parent = plan.params
            shared = [n for n in trial.params if n in parent]
            changed = [n for n in shared if trial.params[n] != parent[n]]
            assert changed == [plan.mutated], (changed, plan.mutated)
            assert plan.parent in [t.number for t in sampler.members(study, trial.number)]
            children += 1
        study.tell(trial, _score(trial.params))
    assert children == 24


def test_the_population_is_the_newest_finished_trials_and_the_oldest_leaves_first():
    sampler = RegularizedEvolutionSampler(population=4, tournament=2, seed=0)
    study = _run(sampler, 9)
    assert [t.number for t in sampler.members(study, 9)] == [5, 6, 7, 8]
    assert [t.number for t in sampler.members(study, 6)] == [2, 3, 4, 5]
    # a failed trial is not a member; a pruned one is, ranked below every complete one
    trial = study.ask()
    sample_genotype(SPACE, trial)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert [t.number for t in sampler.members(study, 10)] == [5, 6, 7, 8]


def test_a_point_told_before_sampling_lives_as_long_as_any_member_of_the_first_population():
    probe = optuna.create_study()
    sample_genotype(SPACE, probe.ask())
    point = probe.trials[0]
    sampler = RegularizedEvolutionSampler(population=4, tournament=4, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trial(optuna.trial.create_trial(params=point.params, distributions=point.distributions, value=100.0,
                                              user_attrs={"warm_start": "zoo:nasfpn-proxy"}))
    _run(sampler, 10, study=study)
    # told as trial 0, the oldest by number, it still leaves last of the first population:
    # a member through the 4 tournaments after it, each of which it wins
    alive = [n for n in range(1, 11) if 0 in [t.number for t in sampler.members(study, n)]]
    assert alive == [1, 2, 3, 4, 5, 6, 7]
    assert [sampler.plan(study, n).parent for n in range(4, 8)] == [0, 0, 0, 0]
    assert sampler.plan(study, 8).parent != 0


def test_a_tournament_takes_its_fittest_member():
    sampler = RegularizedEvolutionSampler(population=4, tournament=4, seed=0)
    study = _run(sampler, 4)
    best = max(study.trials, key=lambda t: t.value)
    assert sampler.plan(study, 4).parent == best.number


def test_same_seed_same_children_and_a_resumed_sampler_continues_alike(tmp_path):
    a = _run(RegularizedEvolutionSampler(population=5, tournament=2, seed=3), 20)
    b = _run(RegularizedEvolutionSampler(population=5, tournament=2, seed=3), 20)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    c = _run(RegularizedEvolutionSampler(population=5, tournament=2, seed=4), 20)
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    # children come from the seed and the history alone: a fresh sampler on a resumed study
    # makes the children an uninterrupted one makes
    storage = f"sqlite:///{tmp_path / 'evo.db'}"
    _run(RegularizedEvolutionSampler(population=5, tournament=2, seed=3), 12, storage=storage)
    resumed = _run(RegularizedEvolutionSampler(population=5, tournament=2, seed=3), 8, storage=storage)
    assert [t.params for t in resumed.trials] == [t.params for t in a.trials]
    kept = make_sampler("evolution", 3, 1, history=12)
    assert isinstance(kept, RegularizedEvolutionSampler) and kept.seed == 3  # not re-seeded on resume


def test_evolution_refuses_several_objectives():
    with pytest.raises(ValueError, match="one objective"):
        make_sampler("evolution", 0, 2)


def test_the_searcher_hands_out_children_once_the_population_is_full(tmp_path):
    from nasfpn.search.evolution import RegularizedEvolutionSampler as Evolution
    from nasfpn.search.sampling import EVOLUTION_POPULATION
    from nasfpn.search.searcher import NeckSearcher

    searcher = NeckSearcher(SPACE, f"sqlite:///{tmp_path / 'study.db'}", "evo", "evolution", 0, ["ap"],
                            str(tmp_path))
    assert isinstance(searcher.study.sampler, Evolution)
    assert searcher.resume([], [], trials=EVOLUTION_POPULATION + 3) == EVOLUTION_POPULATION + 3
    for i in range(EVOLUTION_POPULATION + 3):
        config = searcher.suggest(f"t{i}")
        if i < EVOLUTION_POPULATION - 1:  # early stopped: PRUNED, with its rung score
            searcher.on_trial_complete(f"t{i}", {"rung": 1, "ap_rung": 0.01 * i, "final": False})
        else:
            searcher.on_trial_complete(f"t{i}", {"final": True, "AP": 0.3 + 0.01 * i})
        plan = searcher.study.sampler.plan(searcher.study, config["number"])
        assert (plan is None) == (i < EVOLUTION_POPULATION)
    states = [t.state for t in searcher.study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    children = [t for t in searcher.study.trials if "parent" in t.user_attrs]
    assert len(children) == 3
    for child in children:  # bred at ask time, recorded with the trial: exactly one choice differs
        parent = searcher.study.trials[child.user_attrs["parent"]]
        assert [n for n in child.params if child.params[n] != parent.params[n]] == [child.user_attrs["mutated"]]


def test_children_of_a_parallel_search_are_bred_from_what_has_finished():
    sampler = RegularizedEvolutionSampler(population=4, tournament=3, seed=0)
    study = _run(sampler, 4)
    running = [study.ask() for _ in range(3)]  # three trials at once: no new member meanwhile
    for trial in running:
        sample_genotype(SPACE, trial)
        plan = sampler.plan(study, trial.number)
        assert plan is not None and plan.parent in range(4)
