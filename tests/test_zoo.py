"""Every zoo neck builds, runs at several (odd) input sizes, returns one map per level with the
right shape and width, back-propagates into every parameter, scripts with TorchScript and is
deterministic under a seed."""

from __future__ import annotations

import io
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import nasfpn
from nasfpn.compile import NeckBuildError

IN_CHANNELS = [16, 24, 32]
WIDTH = 16
GENOTYPES = nasfpn.zoo_names("genotype")
# image sizes (H, W): square, odd, and one where mmdetection's NAS-FPN asserts (not divisible by 128)
SIZES = [(64, 64), (100, 75), (37, 53)]


def backbone_maps(size, batch=2, channels=IN_CHANNELS, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return [torch.randn(batch, c, math.ceil(h / 2 ** lv), math.ceil(w / 2 ** lv), generator=g)
            for c, lv in zip(channels, range(3, 3 + len(channels)))]


class ToyFeedbackBackbone(nn.Module):
    """The smallest backbone with the feedback hook `rfp` needs: three stride-2 stages, each a
    first block, then (optionally) + conv1x1(feedback), then the rest of the stage."""

    def __init__(self, channels=IN_CHANNELS, neck_width=WIDTH):
        super().__init__()
        widths = [3, 8] + list(channels)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.first = nn.ModuleList(nn.Sequential(nn.Conv2d(widths[i + 1], widths[i + 2], 3, 2, 1), nn.ReLU())
                                   for i in range(3))
        self.rest = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU()) for c in channels)
        self.feedback_convs = nn.ModuleList(nn.Conv2d(neck_width, c, 1) for c in channels)

    def forward(self, images, feedback=None):
        x, outs = self.stem(images), []
        for i in range(3):
            x = self.first[i](x)
            if feedback is not None:
                x = x + self.feedback_convs[i](feedback[i])
            x = self.rest[i](x)
            outs.append(x)
        return outs


@pytest.mark.parametrize("name", GENOTYPES)
def test_zoo_neck_shapes_and_gradients(name):
    g = nasfpn.load(name)
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)
    backbone = ToyFeedbackBackbone() if g.feedback is not None else None
    for size in SIZES:
        neck.zero_grad(set_to_none=True)
        if backbone is not None:
            backbone.zero_grad(set_to_none=True)
            outs = nasfpn.run_pyramid(backbone, neck, torch.randn(2, 3, *size))
        else:
            outs = neck(backbone_maps(size))
        assert isinstance(outs, tuple) and len(outs) == 5
        for lv, out in zip(range(3, 8), outs):
            assert out.shape == (2, WIDTH, math.ceil(size[0] / 2 ** lv), math.ceil(size[1] / 2 ** lv)), (name, size, lv)
            assert torch.isfinite(out).all()
        weights = [torch.randn_like(o) for o in outs]
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        no_grad = [n for n, p in neck.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not no_grad, f"{name} at {size}: parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", ["fpn", "bifpn"])
def test_backbone_with_all_levels_needs_no_extras(name):
    g = nasfpn.load(name)
    neck = nasfpn.build_neck(g, [8, 8, 8, 8, 8], 8)
    assert len(neck.graph.stem.extras) == 0
    outs = neck(backbone_maps((64, 64), channels=[8] * 5))
    assert [o.shape[-1] for o in outs] == [8, 4, 2, 1, 1]


def test_rfp_runs_the_recursion_through_the_backbone_hook():
    g = nasfpn.load("rfp")
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)
    backbone = ToyFeedbackBackbone()
    images = torch.randn(2, 3, 64, 64)
    calls = []
    backbone.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs.get("feedback")),
                                   with_kwargs=True)
    outs = nasfpn.run_pyramid(backbone, neck, images)
    assert len(calls) == g.feedback.steps and calls[0] is None
    assert [f.shape[1] for f in calls[1]] == [WIDTH] * 3
    single = neck(backbone(images))  # one pass only: differs from the recursive result
    assert not torch.allclose(outs[0], single[0])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("mlfpn", "nasfpn") else n
                                  for n in GENOTYPES])
def test_torchscript_matches_eager(name):
    g = nasfpn.load(name)
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, WIDTH).eval()
    scripted = torch.jit.script(neck.graph)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for size in [(64, 64), (100, 75)]:
        xs = backbone_maps(size)
        with torch.no_grad():
            eager = neck(xs)
            scripted_out = loaded(xs)
        for a, b in zip(eager, scripted_out):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["nasfpn-proxy", "bifpn", "augfpn"])
def test_deterministic_under_a_seed(name):
    g = nasfpn.load(name)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        neck = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)
        results.append(neck(backbone_maps((50, 70))))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    torch.manual_seed(124)
    other = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)(backbone_maps((50, 70)))
    assert not torch.equal(results[0][0], other[0])


def test_shared_weights_stack_one_cell():
    g = nasfpn.load("nasfpn-proxy")
    shared = nasfpn.from_yaml(nasfpn.to_yaml(g).replace("share_weights: false", "share_weights: true"))
    separate = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)
    one = nasfpn.build_neck(shared, IN_CHANNELS, WIDTH)
    cell_params = sum(p.numel() for p in one.graph.cells[0].parameters())
    stem_params = sum(p.numel() for p in one.graph.stem.parameters())
    assert sum(p.numel() for p in one.parameters()) == stem_params + cell_params
    assert sum(p.numel() for p in separate.parameters()) == stem_params + 3 * cell_params
    assert one.graph.cells[0] is one.graph.cells[2]


def test_named_wrapper_is_torchvision_style():
    neck = nasfpn.build_neck(nasfpn.load("fpn"), IN_CHANNELS, WIDTH)
    named = nasfpn.NamedNeck(neck, in_names=["c3", "c4", "c5"])
    xs = backbone_maps((64, 64))
    out = named(OrderedDict(zip(["c3", "c4", "c5"], xs)))
    assert isinstance(out, OrderedDict) and list(out) == ["p3", "p4", "p5", "p6", "p7"]
    for a, b in zip(out.values(), neck(xs)):
        assert torch.equal(a, b)
    with pytest.raises(KeyError, match="c5"):
        named({"c3": xs[0], "c4": xs[1]})


def test_wrong_inputs_are_clear_errors():
    g = nasfpn.load("fpn")
    with pytest.raises(NeckBuildError, match="takes 1 to 5"):
        nasfpn.build_neck(g, [8] * 6, 8)
    neck = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)
    with pytest.raises(ValueError, match="expected 3 backbone maps"):
        neck(backbone_maps((64, 64))[:2])


def test_mmdetection_neck_interface():
    neck = nasfpn.build_neck(nasfpn.load("bifpn"), [40, 112, 320])
    assert (neck.in_channels, neck.out_channels, neck.num_outs) == ([40, 112, 320], 64, 5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", GENOTYPES)
def test_runs_on_cuda(name):
    g = nasfpn.load(name)
    torch.manual_seed(0)
    neck = nasfpn.build_neck(g, IN_CHANNELS, WIDTH)
    xs = backbone_maps((100, 75))
    if g.feedback is not None:
        backbone = ToyFeedbackBackbone()
        images = torch.randn(2, 3, 100, 75)
        cpu = nasfpn.run_pyramid(backbone, neck, images)
        gpu = nasfpn.run_pyramid(backbone.cuda(), neck.cuda(), images.cuda())
    else:
        cpu = neck(xs)
        gpu = neck.cuda()([x.cuda() for x in xs])
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-3)
