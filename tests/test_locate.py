"""Where a genotype lies in a space (dsl/locate.py): the choices that sample it, found for every
sampled point and for the zoo necks a space contains, None for the rest."""

import pytest

import nasfpn
from nasfpn.dsl import RandomSuggester
from nasfpn.dsl.locate import locate
from nasfpn.search.warmstart import zoo_points


class Replay(nasfpn.dsl.Suggester):
    def __init__(self, params):
        self.params = params

    def categorical(self, name, options):
        return self.params[name]

    def integer(self, name, low, high, step=1):
        return self.params[name]


@pytest.mark.parametrize("space_name", ["nasfpn_space", "fusion_space"])
def test_every_sampled_point_is_found_at_the_choices_that_sampled_it(space_name):
    space = nasfpn.load_space(space_name)
    for seed in range(30):
        suggest = RandomSuggester(seed)
        point = space.sample(suggest)
        found = locate(space, point)
        assert found == suggest.params, seed  # fusion_space's `defaults:` choices are tried in turn
        assert space.sample(Replay(found)) == point


def test_a_zoo_neck_is_found_in_the_space_it_belongs_to_and_only_there():
    nasfpn_space, fusion_space = nasfpn.load_space("nasfpn_space"), nasfpn.load_space("fusion_space")
    proxy = nasfpn.load("nasfpn-proxy")
    choices = locate(nasfpn_space, proxy)
    assert choices is not None
    again = nasfpn_space.sample(Replay(choices))
    assert (again.cell, again.stem, again.channels) == (proxy.cell, proxy.stem, proxy.channels)
    assert choices["cell.nodes[0].combine"] == "global_attention"
    assert choices["cell.nodes[2].level"] == 0  # P3: the first of the permutation's free levels
    assert locate(nasfpn_space, nasfpn.load("fpn")) is None       # another topology
    assert locate(fusion_space, proxy) is None                     # another space
    assert list(zoo_points(nasfpn_space)) == ["nasfpn-proxy"]
    # bifpn leaves fusion_space's outputs_last check undeclared: the same graph, so the same point
    assert not nasfpn.load("bifpn").cell.outputs_last and list(zoo_points(fusion_space)) == ["bifpn"]


def test_a_genotype_one_field_away_is_not_a_point():
    from dataclasses import replace

    space = nasfpn.load_space("nasfpn_space")
    point = space.random_sample(4)
    nodes = list(point.cell.nodes)
    nodes[1] = replace(nodes[1], upsample="bilinear")  # fixed to nearest in the space
    assert locate(space, replace(point, cell=replace(point.cell, nodes=tuple(nodes)))) is None
    assert locate(space, replace(point, cell=replace(point.cell, repeats=2))) is None
