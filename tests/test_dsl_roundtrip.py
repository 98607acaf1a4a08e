"""Genotype -> YAML -> Genotype is the identity, for the zoo and for sampled points of the spaces;
sampling is deterministic and asks every parameter name with the same options each time (what
Optuna's define-by-run API needs)."""

from __future__ import annotations

import random
from typing import Any

import pytest

import nasfpn
from nasfpn.dsl import Genotype, RandomSuggester, Suggester, level_name

GENOTYPES = nasfpn.zoo_names("genotype")
SPACES = nasfpn.zoo_names("space")
N_SAMPLES = 50


def test_zoo_lists_both_kinds():
    assert {"fpn", "pafpn", "bifpn", "nasfpn", "nasfpn-proxy", "augfpn", "mlfpn", "rfp"} <= set(GENOTYPES)
    assert set(SPACES) == {"nasfpn_space", "fusion_space"}


def _round_trip(g: Genotype) -> None:
    text = nasfpn.to_yaml(g)
    back = nasfpn.from_yaml(text)
    assert isinstance(back, Genotype)
    assert back == g
    assert hash(back) == hash(g)  # frozen all the way down: tuples, not lists
    assert nasfpn.to_yaml(back) == text


@pytest.mark.parametrize("name", GENOTYPES)
def test_zoo_genotype_round_trips(name):
    g = nasfpn.load(name)
    _round_trip(g)


@pytest.mark.parametrize("name", GENOTYPES)
def test_zoo_genotype_round_trips_through_a_file(tmp_path, name):
    g = nasfpn.load(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(nasfpn.to_yaml(g), encoding="utf-8")
    assert nasfpn.load(path) == g


def test_round_trip_keeps_what_differs_from_the_defaults():
    """Equality would be trivial if both sides lost information: check a few fields survive."""
    g = nasfpn.load("nasfpn")
    back = nasfpn.from_yaml(nasfpn.to_yaml(g))
    assert [n.combine for n in back.cell.nodes] == ["global_attention", "sum", "sum", "sum",
                                                    "global_attention", "global_attention",
                                                    "global_attention"]
    assert back.cell.repeats == 7 and back.cell.sum_unused
    rfp = nasfpn.from_yaml(nasfpn.to_yaml(nasfpn.load("rfp")))
    assert rfp.feedback is not None and rfp.feedback.aspp_dilations == (1, 3, 6, 1)
    aug = nasfpn.from_yaml(nasfpn.to_yaml(nasfpn.load("augfpn")))
    assert aug.cell.nodes[0].block == "residual_augmentation"
    assert aug.cell.nodes[0].param_dict == {"ratios": (0.1, 0.2, 0.3)}
    mlfpn = nasfpn.from_yaml(nasfpn.to_yaml(nasfpn.load("mlfpn")))
    assert mlfpn.stem.nodes[0].combine == "concat" and mlfpn.cell.aggregate == "sfam"


def test_round_trip_detects_a_change():
    g = nasfpn.load("bifpn")
    text = nasfpn.to_yaml(g).replace("repeats: 3", "repeats: 4")
    assert nasfpn.from_yaml(text) != g


# ----------------------------------------------------------------------------- spaces
@pytest.fixture(scope="module")
def nasfpn_space():
    return nasfpn.load_space("nasfpn_space")


@pytest.fixture(scope="module")
def fusion_space():
    return nasfpn.load_space("fusion_space")


@pytest.mark.parametrize("space_name", SPACES)
def test_sampled_points_are_genotypes_that_round_trip(space_name):
    space = nasfpn.load_space(space_name)
    seen = set()
    for seed in range(N_SAMPLES):
        g = space.random_sample(seed)
        assert isinstance(g, Genotype)
        _round_trip(g)
        seen.add(g)
    assert len(seen) > N_SAMPLES // 2  # the seeds really vary the point


def _check_nasfpn_rules(g: Genotype) -> None:
    nodes = g.cell.nodes
    assert len(nodes) == 7
    outputs, intermediate = nodes[-5:], nodes[:-5]
    assert all(n.output for n in outputs)
    assert not any(n.output for n in intermediate)
    assert sorted(level_name(n.level) for n in outputs) == ["P3", "P4", "P5", "P6", "P7"]
    assert all(n.level != 3 for n in intermediate)
    for i, n in enumerate(nodes):
        assert len(n.inputs) == 2 and len(set(n.inputs)) == 2
        pool = ["P3", "P4", "P5", "P6", "P7"] + [f"n{j}" for j in range(i)]
        assert set(n.inputs) <= set(pool), (i, n.inputs)
        assert n.combine in ("sum", "global_attention")
        assert n.fusion == "none"
        assert n.post == ("relu", "conv3x3", "bn")
    assert g.cell.sum_unused and g.cell.outputs_last and g.cell.intermediate_not_finest
    assert g.cell.repeats == 3 and g.channels == 256


def test_nasfpn_space_points_follow_its_rules(nasfpn_space):
    orders, picked = set(), set()
    for seed in range(N_SAMPLES):
        g = nasfpn_space.random_sample(seed)
        _check_nasfpn_rules(g)
        orders.add(tuple(n.level for n in g.cell.nodes[-5:]))
        picked.update(x for n in g.cell.nodes for x in n.inputs)
    assert len(orders) > 10           # the output order is searched, not fixed
    assert {"P3", "P7", "n0", "n5"} <= picked  # inputs come from the whole growing pool


def test_fusion_space_points_follow_its_rules(fusion_space):
    for seed in range(N_SAMPLES):
        g = fusion_space.random_sample(seed)
        nodes = g.cell.nodes
        assert [level_name(n.level) for n in nodes] == ["P6", "P5", "P4", "P3", "P4", "P5", "P6", "P7"]
        assert [n.output for n in nodes] == [False] * 3 + [True] * 5
        for n in nodes:
            assert 2 <= len(n.inputs) <= 3 and len(set(n.inputs)) == len(n.inputs)
        assert 1 <= g.cell.repeats <= 3


@pytest.mark.parametrize("space_name", SPACES)
def test_same_seed_same_genotype(space_name):
    space = nasfpn.load_space(space_name)
    for seed in (0, 7, 123):
        assert space.random_sample(seed) == space.random_sample(seed)
        assert nasfpn.to_yaml(space.random_sample(seed)) == nasfpn.to_yaml(space.random_sample(seed))
    assert space.random_sample(0) != space.random_sample(1)


# ----------------------------------------------------------------------------- the suggester
class RecordingSuggester(Suggester):
    """A Suggester that answers at random and records what each parameter name was offered."""

    def __init__(self, seed: int, book: dict[str, list]):
        self.rng = random.Random(seed)
        self.book = book           # name -> list of what was offered, one entry per ask
        self.params: dict[str, Any] = {}

    def _ask(self, name: str, offer) -> None:
        assert name not in self.params, f"{name} asked twice in one sample"
        self.book.setdefault(name, []).append(offer)

    def categorical(self, name: str, options: list[Any]) -> Any:
        self._ask(name, ("categorical", tuple(options)))
        self.params[name] = value = self.rng.choice(options)
        return value

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        assert low <= high, (name, low, high)
        self._ask(name, ("integer", low, high, step))
        self.params[name] = value = self.rng.randrange(low, high + 1, step)
        return value


class ReplaySuggester(Suggester):
    """Answers from a recorded params dict, the way a trial's parameters rebuild its genotype."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def categorical(self, name: str, options: list[Any]) -> Any:
        assert self.params[name] in options
        return self.params[name]

    def integer(self, name: str, low: int, high: int, step: int = 1) -> int:
        assert low <= self.params[name] <= high
        return self.params[name]


def _record(space, n: int = N_SAMPLES):
    book: dict[str, list] = {}
    names = []
    for seed in range(n):
        suggest = RecordingSuggester(seed, book)
        g = space.sample(suggest)
        names.append(frozenset(suggest.params))
        assert space.sample(ReplaySuggester(suggest.params)) == g
    return book, names


def test_nasfpn_space_asks_a_static_set_of_parameters(nasfpn_space):
    book, names = _record(nasfpn_space)
    # The same names in every sample ...
    assert len(set(names)) == 1
    # ... and each name always offered exactly the same options or range.
    for name, offers in book.items():
        assert len(offers) == N_SAMPLES
        assert len(set(offers)) == 1, f"{name} was offered {sorted(set(offers))}"
    # The names are field paths: 7 combines, 2 intermediate levels, 5 permutation slots, 14 input slots.
    assert len(names[0]) == 7 + 2 + 5 + 14
    assert book["cell.nodes[0].combine"][0] == ("categorical", ("sum", "global_attention"))
    assert book["cell.nodes[0].level"][0] == ("categorical", ("P4", "P5", "P6", "P7"))
    # permutation: node k of the group picks among the 5 - k levels not yet taken
    for k in range(5):
        assert book[f"cell.nodes[{2 + k}].level"][0] == ("integer", 0, 4 - k, 1)
    # pick 2 from a pool of 5 + i: slot j indexes the candidates not yet picked
    for i in range(7):
        assert book[f"cell.nodes[{i}].inputs[0]"][0] == ("integer", 0, 5 + i - 1, 1)
        assert book[f"cell.nodes[{i}].inputs[1]"][0] == ("integer", 0, 5 + i - 2, 1)


def test_fusion_space_names_keep_their_options(fusion_space):
    """fusion_space picks 2 or 3 inputs, so the third slot is asked only sometimes; when it is
    asked, its range is always the same."""
    book, names = _record(fusion_space)
    for name, offers in book.items():
        assert len(set(offers)) == 1, f"{name} was offered {sorted(set(offers), key=repr)}"
    assert book["cell.nodes[0].inputs.k"][0] == ("integer", 2, 3, 1)
    assert book["cell.repeats"][0] == ("integer", 1, 3, 1)
    assert 0 < len(book["cell.nodes[0].inputs[2]"]) < N_SAMPLES
    assert len(set(names)) > 1


def test_random_suggester_records_the_point():
    space = nasfpn.load_space("nasfpn_space")
    suggest = RandomSuggester(5)
    g = space.sample(suggest)
    assert space.sample(ReplaySuggester(dict(suggest.params))) == g
    assert g == space.random_sample(5)


# ----------------------------------------------------------------------------- exhaustive sampling
SMALL_SPACE = """\
kind: space
name: small
levels: [P3, P4]
channels: 8
cell:
  nodes:
    - {level: P4, inputs: {pick: 2}, combine: {choice: [sum, global_attention]}}
    - {level: {permutation: [P3, P4]}, inputs: {pick: {range: [1, 3]}}, output: true}
    - {level: {permutation: [P3, P4]}, inputs: {pick: 1}, output: true}
"""


def _every_point(space) -> list[Genotype]:
    """Walk every answer to every question the space asks (depth first)."""

    class Scripted(Suggester):
        def __init__(self, script):
            self.script, self.sizes = script, []

        def _index(self, n):
            k = len(self.sizes)
            self.sizes.append(n)
            return self.script[k] if k < len(self.script) else 0

        def categorical(self, name, options):
            return options[self._index(len(options))]

        def integer(self, name, low, high, step=1):
            values = list(range(low, high + 1, step))
            return values[self._index(len(values))]

    points, todo = [], [()]
    while todo:
        script = todo.pop()
        suggest = Scripted(script)
        g = space.sample(suggest)
        if len(script) < len(suggest.sizes):
            todo.extend(script + (v,) for v in range(suggest.sizes[len(script)]))
        else:
            points.append(g)
    return points


def test_every_answer_is_a_distinct_point_and_size_counts_them():
    """Each ordered pick (including picking the whole pool, and the last candidate in a later
    slot) is reachable, no two answer sequences give the same point, and size() agrees."""
    space = nasfpn.from_yaml(SMALL_SPACE)
    points = _every_point(space)
    # n0: 2 ordered pairs x 2 combines; n1: P(3,1)+P(3,2)+P(3,3) = 15; n2: 4; levels: 2! orders
    assert len(points) == 2 * 2 * 15 * 4 * 2 == space.size()
    assert len(set(points)) == len(points)
    n1_inputs = {g.cell.nodes[1].inputs for g in points}
    assert len(n1_inputs) == 15
    assert ("n0", "P4", "P3") in n1_inputs  # the last candidate, then backwards


def test_pick_can_reach_the_last_candidate_in_any_slot(nasfpn_space):
    class Highest(Suggester):
        def categorical(self, name, options):
            return options[-1]

        def integer(self, name, low, high, step=1):
            return high

    g = nasfpn_space.sample(Highest())
    assert g.cell.nodes[0].inputs == ("P7", "P6")
    assert g.cell.nodes[6].inputs == ("n5", "n4")


def test_nasfpn_space_reaches_every_ordered_pair(nasfpn_space):
    pairs = {nasfpn_space.random_sample(seed).cell.nodes[0].inputs for seed in range(400)}
    assert len(pairs) == 5 * 4
