"""The compiled zoo necks compute exactly what hand-written necks of the same architecture do.

For fpn, pafpn, bifpn and nasfpn: compile the zoo genotype at small widths, randomise its
parameters and BN statistics, copy them into the plain-torch reference (tests/reference_necks.py,
which does not import nasfpn), and compare outputs, gradients w.r.t. the inputs and the
parameters, and the BN running statistics, in train and in eval mode, at sizes that halve
unevenly (a 100x75 image gives C3 13x10, C4 7x5, C5 4x3).
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from reference_necks import reference_for  # tests/ is on sys.path (pytest rootdir-less layout)
from torch import nn
from torch.testing import assert_close

import nasfpn

NECKS = ["fpn", "pafpn", "bifpn", "nasfpn"]
IN_CHANNELS = [16, 24, 32]          # C3 keeps the neck width: exercises the identity lateral
OUT_CHANNELS = 16
BATCH = 2
# image sizes; the backbone maps are stride 8, 16, 32 with rounding up
IMAGE_SIZES = [(64, 64), (100, 75), (83, 131), (40, 24)]
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The maps are tiny: one thread is faster, and immune to a busy machine's other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def level_size(image_size, level):
    return [math.ceil(n / 2 ** level) for n in image_size]


def backbone_maps(image_size, seed, in_channels=IN_CHANNELS):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(BATCH, c, *level_size(image_size, 3 + k), generator=gen)
            for k, c in enumerate(in_channels)]


@torch.no_grad()
def randomise(neck: nn.Module, seed: int) -> None:
    """Conv weights keep their default init; everything that starts at a constant does not."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    for m in neck.modules():
        if isinstance(m, nn.BatchNorm2d):
            uniform(m.weight, 0.5, 1.5)
            uniform(m.bias, -0.3, 0.3)
            uniform(m.running_mean, -0.3, 0.3)
            uniform(m.running_var, 0.5, 1.5)
        elif isinstance(m, nn.Conv2d):
            if m.bias is not None:
                uniform(m.bias, -0.3, 0.3)
        else:
            for p in m.parameters(recurse=False):   # fusion weights: some negative (relu'd away)
                uniform(p, -0.5, 1.5)


@functools.lru_cache(maxsize=None)
def _pristine(name: str, in_channels: tuple[int, ...]):
    g = nasfpn.load(name)
    neck = nasfpn.build_neck(g, in_channels, OUT_CHANNELS)
    randomise(neck, seed=sum(map(ord, name)))
    ref = reference_for(name, in_channels, OUT_CHANNELS, g.cell.repeats).load_from(neck)
    return neck, ref


def pair(name: str, in_channels=IN_CHANNELS):
    neck, ref = _pristine(name, tuple(in_channels))
    return copy.deepcopy(neck), copy.deepcopy(ref)


def run(module, inputs, weights):
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    outs = module(xs)
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    loss.backward()
    return outs, [x.grad for x in xs]


@pytest.mark.parametrize("size", IMAGE_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NECKS)
def test_matches_hand_written(name, mode, size):
    check(name, mode, size, IN_CHANNELS)


@pytest.mark.parametrize("name", ["bifpn", "nasfpn"])
def test_matches_hand_written_without_lateral_convs(name):
    """Backbone widths equal to the neck's: every lateral (and BiFPN's P6 conv) is skipped."""
    check(name, "train", (100, 75), [OUT_CHANNELS] * 3)


def check(name, mode, size, in_channels):
    neck, ref = pair(name, in_channels)
    neck.train(mode == "train")
    ref.train(mode == "train")
    inputs = backbone_maps(size, seed=size[0] * 1000 + size[1], in_channels=in_channels)

    gen = torch.Generator().manual_seed(7)
    weights = [torch.randn(BATCH, OUT_CHANNELS, *level_size(size, level), generator=gen)
               for level in range(3, 8)]

    got, got_grads = run(neck, inputs, weights)
    want, want_grads = run(ref, inputs, weights)

    assert len(got) == len(want) == 5
    for level, (a, b) in enumerate(zip(got, want), start=3):
        assert a.shape == b.shape, f"P{level}"
        assert_close(a, b, **TOL, msg=lambda m: f"P{level} output: {m}")
    for k, (a, b) in enumerate(zip(got_grads, want_grads), start=3):
        assert_close(a, b, **TOL, msg=lambda m: f"grad wrt C{k}: {m}")
    # parameter gradients and (train mode) BN running statistics, through the weight map
    for r, c in ref.module_pairs(neck):
        rp, cp = dict(r.named_parameters()), dict(c.named_parameters())
        assert rp.keys() == cp.keys()
        for key in rp:
            assert_close(cp[key].grad, rp[key].grad, **TOL, msg=lambda m: f"{c}.{key}.grad: {m}")
        rb, cb = dict(r.named_buffers()), dict(c.named_buffers())
        for key in rb:
            assert_close(cb[key], rb[key], **TOL, msg=lambda m: f"{c}.{key}: {m}")


@pytest.mark.parametrize("name", NECKS)
def test_scripted_graph_matches_hand_written(name):
    neck, ref = pair(name)
    neck.eval()
    ref.eval()
    scripted = torch.jit.script(neck.graph)
    inputs = backbone_maps((100, 75), seed=3)
    with torch.no_grad():
        for a, b in zip(scripted(inputs), ref(inputs)):
            assert_close(a, b, **TOL)


def test_weight_map_rejects_a_missing_layer():
    """load_from fails loudly when the compiled module has a tensor the reference lacks."""
    neck, ref = pair("fpn")
    neck.graph.stem.extras[1].body.append(nn.BatchNorm2d(OUT_CHANNELS))
    with pytest.raises(AssertionError, match="compiled tensors not in the weight map"):
        ref.load_from(neck)
