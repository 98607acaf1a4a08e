"""The DSL's semantic rules, checked numerically on compiled modules: NAS-FPN's unused-feature
sum, the one-output-per-level rule, both global_attention variants, dead-node pruning.

The genotypes here use post ops [] and `lateral_when: channels_differ` with in_channels equal to
the neck width, so laterals are identities and most necks have no parameters at all: every
output is then an exact, hand-computable function of the backbone maps."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import nasfpn
from nasfpn.dsl import Genotype

C = 8
LEVELS5 = ["P3", "P4", "P5", "P6", "P7"]


def genotype(nodes: list[dict], levels=LEVELS5, stem_nodes=(), **cell) -> Genotype:
    return nasfpn.from_dict({
        "name": "t",
        "levels": list(levels),
        "channels": C,
        "stem": {"lateral": ["conv1x1", "bn"], "lateral_when": "channels_differ", "extra": "maxpool",
                 "extra_source": "lateral", "nodes": list(stem_nodes)},
        "defaults": {"post": []},
        "cell": {"nodes": nodes, **cell},
    })


def backbone(batch: int = 2, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """C3, C4, C5 with C channels; the second sample is scaled so per-sample pooling matters."""
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(batch, C, size >> k, size >> k, generator=gen) for k in range(3)]
    scale = torch.arange(1, batch + 1, dtype=torch.float32).view(batch, 1, 1, 1) * 1.5
    return [m * scale for m in maps]


def run(g: Genotype, inputs, levels: int = 3) -> tuple[torch.Tensor, ...]:
    neck = nasfpn.build_neck(g, in_channels=[C] * levels, out_channels=C).eval()
    with torch.no_grad():
        return neck(inputs)


def down(x, factor=2):
    return F.max_pool2d(x, factor, factor, ceil_mode=True)


def up(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def differ(a, b):
    assert a.shape == b.shape
    assert (a - b).abs().max() > 1e-2


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- sum_unused
UNUSED_NODES = [
    {"level": "P4", "inputs": ["P3", "P4"]},                    # n0
    {"level": "P3", "inputs": ["P3", "n0"], "output": True},    # n1
    {"level": "P4", "inputs": ["n0", "n1"], "output": True},    # n2: P4 and n0 were consumed
    {"level": "P5", "inputs": ["n2", "P6"], "output": True},    # n3: P5 was never consumed
    {"level": "P6", "inputs": ["n3", "P7"], "output": True},    # n4: P6 was consumed by n3
    {"level": "P7", "inputs": ["n4", "n3"], "output": True},    # n5: P7 was consumed by n4
]


def _by_name(plan):
    return {p.name: p for p in plan.cell}


def _unused_reference(c3, c4, c5, sum_unused: bool):
    p3, p4, p5 = c3, c4, c5
    p6 = down(p5)
    p7 = down(p6)
    n0 = down(p3) + p4
    n1 = p3 + up(n0, p3)
    n2 = n0 + down(n1)
    n3 = down(n2) + up(p6, p5)
    if sum_unused:
        n3 = n3 + p5
    n4 = down(n3) + up(p7, p6)
    n5 = down(n4) + down(n3, 4)
    return n1, n2, n3, n4, n5


def test_sum_unused_plan_names_the_unconsumed_feature():
    plan = nasfpn.make_plan(genotype(UNUSED_NODES, sum_unused=True))
    unused = {name: p.unused_names for name, p in _by_name(plan).items()}
    assert unused == {"n0": (), "n1": (), "n2": (), "n3": ("P5",), "n4": (), "n5": ()}
    assert plan.pruned == ()


def test_sum_unused_adds_the_unconsumed_feature_exactly():
    g = genotype(UNUSED_NODES, sum_unused=True)
    assert n_params(nasfpn.build_neck(g, in_channels=[C] * 3, out_channels=C)) == 0
    inputs = backbone()
    outs = run(g, inputs)
    expected = _unused_reference(*inputs, sum_unused=True)
    assert len(outs) == 5
    for level, got, want in zip(LEVELS5, outs, expected):
        assert got.shape == want.shape, level
        close(got, want)
    # The P5 output is exactly combine(inputs) + P5: subtracting P5 leaves the plain sum.
    p5 = inputs[2]
    p6 = down(p5)
    close(outs[2] - p5, down(expected[1]) + up(p6, p5))


def test_without_sum_unused_the_feature_is_not_added():
    g = genotype(UNUSED_NODES, sum_unused=False)
    plan = nasfpn.make_plan(g)
    assert all(p.unused_names == () and p.unused == () for p in plan.cell)
    inputs = backbone()
    outs = run(g, inputs)
    for got, want in zip(outs, _unused_reference(*inputs, sum_unused=False)):
        close(got, want)
    with_rule = run(genotype(UNUSED_NODES, sum_unused=True), inputs)
    differ(outs[2], with_rule[2])
    close(outs[0], with_rule[0])  # P3 and P4 outputs come before the rule has anything to add
    close(outs[1], with_rule[1])


def test_a_consumed_feature_is_not_summed_in():
    """n2 (P4 output): P4 and n0 sit at P4 but were consumed before n2 is built."""
    g = genotype(UNUSED_NODES, sum_unused=True)
    inputs = backbone()
    p3, p4 = inputs[0], inputs[1]
    n0 = down(p3) + p4
    n1 = p3 + up(n0, p3)
    out_p4 = run(g, inputs)[1]
    close(out_p4, n0 + down(n1))
    differ(out_p4, n0 + down(n1) + p4)


def test_an_unconsumed_intermediate_node_is_summed_into_its_output():
    """The rule covers nodes too, and the summed node is then live (not pruned)."""
    nodes = [
        {"level": "P6", "inputs": ["P6", "P7"]},                   # n0: nothing takes it as input
        {"level": "P3", "inputs": ["P3", "P4"], "output": True},   # n1
        {"level": "P4", "inputs": ["P4", "n1"], "output": True},   # n2
        {"level": "P5", "inputs": ["P5", "n2"], "output": True},   # n3
        {"level": "P6", "inputs": ["P6", "n3"], "output": True},   # n4: P6 consumed, n0 not
        {"level": "P7", "inputs": ["P7", "n4"], "output": True},   # n5
    ]
    on, off = genotype(nodes, sum_unused=True), genotype(nodes, sum_unused=False)
    plan_on, plan_off = nasfpn.make_plan(on), nasfpn.make_plan(off)
    assert _by_name(plan_on)["n4"].unused_names == ("n0",)
    assert plan_on.pruned == () and plan_off.pruned == ("n0",)
    inputs = backbone()
    p3, p4, p5 = inputs
    p6 = down(p5)
    p7 = down(p6)
    n0 = p6 + up(p7, p6)
    n1 = p3 + up(p4, p3)
    n2 = p4 + down(n1)
    n3 = p5 + down(n2)
    n4 = p6 + down(n3)
    close(run(on, inputs)[3], n4 + n0)
    close(run(off, inputs)[3], n4)


def test_published_nasfpn_cell_sums_unused_p5_and_p7():
    plan = nasfpn.make_plan(nasfpn.load("nasfpn"))
    unused = {p.name: p.unused_names for p in plan.cell if p.unused_names}
    assert unused == {"n4": ("P5",), "n5": ("P7",)}
    assert plan.pruned == ()


def test_sampled_nasfpn_space_points_have_no_dead_nodes():
    """With sum_unused and the outputs last, an unconsumed intermediate node always reaches the
    output at its level, so nothing is ever pruned."""
    space = nasfpn.load_space("nasfpn_space")
    summed = 0
    for seed in range(50):
        plan = nasfpn.make_plan(space.random_sample(seed))
        assert plan.pruned == ()
        summed += sum(1 for p in plan.cell if any(n.startswith("n") for n in p.unused_names))
    assert summed > 0  # some samples do rely on the rule


# ----------------------------------------------------------------------------- permutation rule
OUTPUT_TAIL = [
    {"level": "P5", "inputs": ["P5", "n1"], "output": True},
    {"level": "P6", "inputs": ["P6", "n2"], "output": True},
    {"level": "P7", "inputs": ["P7", "n3"], "output": True},
]


def test_two_outputs_at_one_level_and_none_at_another_is_rejected():
    nodes = [{"level": "P4", "inputs": ["P3", "P4"], "output": True},
             {"level": "P4", "inputs": ["P4", "n0"], "output": True}] + OUTPUT_TAIL
    with pytest.raises(nasfpn.DSLError) as info:
        genotype(nodes)
    message = str(info.value)
    assert "cell.nodes[1].level: two output nodes at level P4 (n0 and n1)" in message
    assert "cell.nodes: no output node at level P3" in message
    assert len(info.value.problems) == 2


def test_one_output_per_level_is_accepted():
    nodes = [{"level": "P3", "inputs": ["P3", "P4"], "output": True},
             {"level": "P4", "inputs": ["P4", "n0"], "output": True}] + OUTPUT_TAIL
    g = genotype(nodes)
    assert g.outputs() == [(3, 0), (4, 1), (5, 2), (6, 3), (7, 4)]
    outs = run(g, backbone())
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]


def test_outputs_are_returned_finest_first_whatever_the_node_order():
    nodes = [{"level": "P7", "inputs": ["P7", "P6"], "output": True},
             {"level": "P5", "inputs": ["P5", "n0"], "output": True},
             {"level": "P3", "inputs": ["P3", "n1"], "output": True},
             {"level": "P6", "inputs": ["P6", "n2"], "output": True},
             {"level": "P4", "inputs": ["P4", "n3"], "output": True}]
    outs = run(genotype(nodes), backbone())
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]
    p6 = down(backbone()[2])
    close(outs[4], down(p6) + down(p6))  # n0 = P7 + maxpool(P6), and P7 = maxpool(P6)
    close(outs[3], p6 + down(outs[0], 8))  # n3 = P6 + maxpool(n2), n2 the P3 output


# ----------------------------------------------------------------------------- global attention
def attention_genotype(inputs: list[str], combine: str) -> Genotype:
    return genotype([
        {"level": "P4", "inputs": inputs, "combine": combine, "output": True},
        {"level": "P3", "inputs": ["P3"], "output": True},
        {"level": "P5", "inputs": ["P5"], "output": True},
    ], levels=["P3", "P4", "P5"])


def attention(inputs: list[str], combine: str, maps) -> torch.Tensor:
    g = attention_genotype(inputs, combine)
    assert n_params(nasfpn.build_neck(g, in_channels=[C] * 3, out_channels=C)) == 0
    return run(g, maps)[1]


def at_p4(name: str, maps) -> torch.Tensor:
    p3, p4, p5 = maps
    return {"P3": down(p3), "P4": p4, "P5": up(p5, p4)}[name]


def tf_formula(coarse, fine):
    return coarse + fine * torch.sigmoid(coarse.amax(dim=(2, 3), keepdim=True))


def mmdet_formula(first, second):
    return second + first * torch.sigmoid(second.mean(dim=(2, 3), keepdim=True))


COARSER_PAIRS = [("P4", "P5"), ("P3", "P5"), ("P3", "P4")]  # (finer, coarser) source levels


@pytest.mark.parametrize("fine, coarse", COARSER_PAIRS)
def test_tf_attention_gates_the_finer_input_by_the_coarser_max(fine, coarse):
    maps = backbone()
    want = tf_formula(at_p4(coarse, maps), at_p4(fine, maps))
    listed_fine_first = attention([fine, coarse], "global_attention", maps)
    listed_coarse_first = attention([coarse, fine], "global_attention", maps)
    close(listed_fine_first, want)
    close(listed_coarse_first, want)
    # The wrong role assignment (gate by the finer input) gives something else.
    differ(listed_fine_first, tf_formula(at_p4(fine, maps), at_p4(coarse, maps)))


@pytest.mark.parametrize("first, second", [("P4", "P5"), ("P5", "P4"), ("P3", "P5"), ("P5", "P3")])
def test_mmdet_attention_gates_the_first_by_the_second_avg(first, second):
    maps = backbone()
    got = attention([first, second], "global_attention_mmdet", maps)
    close(got, mmdet_formula(at_p4(first, maps), at_p4(second, maps)))
    # Input order matters for this variant.
    differ(got, mmdet_formula(at_p4(second, maps), at_p4(first, maps)))


@pytest.mark.parametrize("inputs", [["P4", "P5"], ["P5", "P4"]])
def test_the_two_attention_variants_differ(inputs):
    maps = backbone()
    tf = attention(inputs, "global_attention", maps)
    mmdet = attention(inputs, "global_attention_mmdet", maps)
    differ(tf, mmdet)
    # Neither variant matches the other's formula: swapping implementations would fail.
    a, b = at_p4(inputs[0], maps), at_p4(inputs[1], maps)
    differ(tf, mmdet_formula(a, b))
    differ(mmdet, tf_formula(at_p4("P5", maps), at_p4("P4", maps)))
    # ... nor a max pool in the mmdet variant, nor an avg pool in the TF one.
    coarse, fine = at_p4("P5", maps), at_p4("P4", maps)
    differ(tf, coarse + fine * torch.sigmoid(coarse.mean(dim=(2, 3), keepdim=True)))
    differ(mmdet, b + a * torch.sigmoid(b.amax(dim=(2, 3), keepdim=True)))


def test_attention_pools_each_sample_and_channel_separately():
    maps = backbone(batch=2)
    both = attention(["P4", "P5"], "global_attention", maps)
    single = attention(["P4", "P5"], "global_attention", [m[1:] for m in maps])
    close(both[1:], single)


def test_default_attention_is_the_tf_variant():
    assert nasfpn.load("nasfpn").cell.nodes[0].combine == "global_attention"
    maps = backbone()
    close(attention(["P5", "P4"], "global_attention", maps),
          tf_formula(at_p4("P5", maps), at_p4("P4", maps)))


# ----------------------------------------------------------------------------- dead nodes
def without(g: Genotype, dead: tuple[str, ...]) -> Genotype:
    """The same genotype with the dead nodes deleted and the others renumbered."""
    rename = {name: name for name in g.level_names}
    stem, cell = [], []
    for prefix, nodes, kept in (("s", g.stem.nodes, stem), ("n", g.cell.nodes, cell)):
        for i, node in enumerate(nodes):
            if f"{prefix}{i}" in dead:
                continue
            assert not set(node.inputs) & set(dead)
            rename[f"{prefix}{i}"] = f"{prefix}{len(kept)}"
            kept.append(dataclasses.replace(node, inputs=tuple(rename[x] for x in node.inputs)))
    return dataclasses.replace(g, stem=dataclasses.replace(g.stem, nodes=tuple(stem)),
                               cell=dataclasses.replace(g.cell, nodes=tuple(cell)))


def assert_same_neck(g: Genotype, pruned: Genotype, in_channels=(C, C, C)):
    torch.manual_seed(0)
    a = nasfpn.build_neck(g, in_channels=list(in_channels), out_channels=C).eval()
    torch.manual_seed(0)
    b = nasfpn.build_neck(pruned, in_channels=list(in_channels), out_channels=C).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert n_params(a) == n_params(b)
    maps = backbone()
    with torch.no_grad():
        for x, y in zip(a(maps), b(maps)):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    return a


CONV = ["relu", "conv3x3", "bn"]


def test_handwritten_dead_nodes_are_pruned_and_build_nothing():
    g = genotype(
        stem_nodes=[{"level": "P4", "inputs": ["P4", "P5"], "post": CONV}],       # s0: unused
        nodes=[
            {"level": "P4", "inputs": ["P4", "P5"], "post": CONV},                # n0
            {"level": "P5", "inputs": ["P5", "n0"], "post": CONV},                # n1: dead
            {"level": "P6", "inputs": ["n1", "P7"], "post": CONV},                # n2: dead (only n1 feeds it)
            {"level": "P3", "inputs": ["P3", "n0"], "output": True, "post": CONV},
            {"level": "P4", "inputs": ["n0", "n3"], "output": True, "post": CONV},
            {"level": "P5", "inputs": ["n4", "P5"], "output": True},
            {"level": "P6", "inputs": ["n5", "P6"], "output": True},
            {"level": "P7", "inputs": ["n6", "P7"], "output": True},
        ])
    plan = nasfpn.make_plan(g)
    assert plan.pruned == ("s0", "n1", "n2")
    assert [p.name for p in plan.cell] == ["n0", "n3", "n4", "n5", "n6", "n7"]
    assert plan.stem == ()
    neck = assert_same_neck(g, without(g, plan.pruned))
    assert len(neck.graph.cells[0].nodes) == 6
    assert len(neck.graph.stem.nodes) == 0
    # 3 live nodes with a 3x3 conv + BN each, nothing for the three dead ones.
    assert n_params(neck) == 3 * (C * C * 9 + 2 * C)


def test_sampled_dead_nodes_are_pruned_and_build_nothing():
    """fusion_space has no sum_unused: an intermediate node nothing picks is dead."""
    space = nasfpn.load_space("fusion_space")
    checked = 0
    for seed in range(50):
        g = space.random_sample(seed)
        plan = nasfpn.make_plan(g)
        if not plan.pruned:
            continue
        live = {p.name for p in plan.cell}
        consumed = {x for n in g.cell.nodes for x in n.inputs}
        for name in plan.pruned:
            i = int(name[1:])
            assert not g.cell.nodes[i].output and name not in live
            # nothing live reads it
            assert all(name not in p.input_names for p in plan.cell)
            assert name not in consumed or all(f"n{j}" in plan.pruned for j, n in enumerate(g.cell.nodes)
                                               if name in n.inputs)
        neck = assert_same_neck(g, without(g, plan.pruned))
        assert all(len(cell.nodes) == len(g.cell.nodes) - len(plan.pruned) for cell in neck.graph.cells)
        checked += 1
        if checked == 3:
            break
    assert checked == 3, "expected fusion_space samples with dead nodes among the first 50 seeds"
