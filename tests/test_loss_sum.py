"""Summing several losses and calling backward once gives the same gradients as one backward per
loss (autograd accumulates into .grad): the proxy trainer relies on it to back-propagate the
classification, box and centerness losses in a single pass."""

import torch
from torch import nn

import nasfpn


def _losses(neck, heads, xs):
    outs = neck(xs)
    cls_head, box_head = heads
    cls = sum(nn.functional.binary_cross_entropy_with_logits(cls_head(o), torch.zeros_like(cls_head(o)))
              for o in outs)
    box = sum(box_head(o).abs().mean() for o in outs)
    reg = sum((p ** 2).sum() for p in neck.parameters()) * 1e-4
    return [cls, box, reg]


def _grads(modules):
    return [p.grad.clone() for m in modules for p in m.parameters()]


def test_summed_losses_give_the_same_gradients_as_separate_backwards():
    torch.manual_seed(0)
    neck = nasfpn.build_neck(nasfpn.load("nasfpn-proxy"), [8, 8, 8], 8).double()
    heads = [nn.Conv2d(8, 3, 3, padding=1).double(), nn.Conv2d(8, 4, 3, padding=1).double()]
    modules = [neck, *heads]
    xs = [torch.randn(2, 8, s, s, dtype=torch.float64) for s in (16, 8, 4)]
    neck.eval()  # fixed BN statistics: every forward is the same function

    sum(_losses(neck, heads, xs)).backward()
    summed = _grads(modules)

    per_loss = []
    for k in range(3):
        for m in modules:
            m.zero_grad(set_to_none=False)
        _losses(neck, heads, xs)[k].backward()
        per_loss.append(_grads(modules))
    separate = [sum(gs) for gs in zip(*per_loss)]

    for m in modules:  # and accumulating over backwards of one graph (retain_graph)
        m.zero_grad(set_to_none=False)
    losses = _losses(neck, heads, xs)
    for k, loss in enumerate(losses):
        loss.backward(retain_graph=k < len(losses) - 1)
    accumulated = _grads(modules)

    assert len(summed) == len(separate) > 0
    for a, b, c in zip(summed, separate, accumulated):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    # and it is not vacuous: one loss alone gives different gradients
    assert any(not torch.allclose(a, b) for a, b in zip(summed, per_loss[0]))
