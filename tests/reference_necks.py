"""Hand-written reference necks, in plain torch, for checking the genotype compiler.

Each class is the architecture of one zoo genotype written the way a person writes it by hand
(mmdetection's FPN / PAFPN, efficientdet-pytorch's BiFPN, the TF reference's NAS-FPN builder).
Nothing here imports nasfpn: the only link to the compiled module is `load_from(neck)`, which
copies the compiled module's weights in by an explicit map of its structure
(`neck.graph.stem.laterals[i]`, `neck.graph.cells[s].nodes[j].post`, ...), after which both
must compute the same function.

All of them take [C3, C4, C5] (finest first) and return (P3, P4, P5, P6, P7). Resampling goes
to the exact size of the target level, so inputs whose sizes were halved with rounding up
(e.g. 13x10, 7x5, 4x3 for a 100x75 image) work: nearest interpolation with `size=`, max-pooling
with kernel = stride = factor and ceil mode.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = (3, 4, 5, 6, 7)


def upsample_like(x: Tensor, ref: Tensor) -> Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


def maxpool_down(x: Tensor, factor: int = 2) -> Tensor:
    return F.max_pool2d(x, kernel_size=factor, stride=factor, ceil_mode=True)


# --------------------------------------------------------------------------- weight copying


class _Reference(nn.Module):
    """Shared `load_from`: subclasses list (reference module, compiled module) pairs."""

    def module_pairs(self, neck: nn.Module) -> List[Tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    @torch.no_grad()
    def load_from(self, neck: nn.Module) -> "_Reference":
        """Copy the compiled neck's parameters and buffers into this module. Every tensor on
        both sides must be covered by the map, so an extra or a missing layer in the compiled
        module is an error rather than a silently ignored weight."""
        pairs = self.module_pairs(neck)
        for ref, compiled in pairs:
            ref.load_state_dict(compiled.state_dict(), strict=True)
        _check_covered(self, [r for r, _ in pairs], "reference")
        _check_covered(neck, [c for _, c in pairs], "compiled")
        return self


def _check_covered(root: nn.Module, mapped: Sequence[nn.Module], side: str) -> None:
    covered = {id(t) for m in mapped for t in list(m.parameters()) + list(m.buffers())}
    missing = [name for name, t in list(root.named_parameters()) + list(root.named_buffers())
               if id(t) not in covered]
    if missing:
        raise AssertionError(f"{side} tensors not in the weight map: {missing}")


# --------------------------------------------------------------------------- FPN (RetinaNet)


class FPN(_Reference):
    """RetinaNet's FPN: 1x1 laterals, nearest top-down + add, 3x3 output convs on P3-P5,
    P6 = conv3x3/2(C5), P7 = conv3x3/2(relu(P6))."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                       for _ in in_channels)
        self.p6_conv = nn.Conv2d(in_channels[-1], out_channels, 3, stride=2, padding=1)
        self.p7_conv = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + upsample_like(laterals[i], laterals[i - 1])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        p6 = self.p6_conv(inputs[-1])
        p7 = self.p7_conv(F.relu(p6))
        return tuple(outs + [p6, p7])

    def module_pairs(self, neck):
        stem, cell = neck.graph.stem, neck.graph.cells[0]
        pairs = [(self.lateral_convs[i], stem.laterals[i]) for i in range(3)]
        pairs += [(self.p6_conv, stem.extras[0].body[0]),      # body: [conv]
                  (self.p7_conv, stem.extras[1].body[1])]      # body: [relu, conv]
        # fpn.yaml: n2 = conv3x3(n1) at P3, n3 = conv3x3(n0) at P4, n4 = conv3x3(P5) at P5
        pairs += [(self.fpn_convs[k], cell.nodes[2 + k].post) for k in range(3)]
        return pairs


# --------------------------------------------------------------------------- PAFPN


class PAFPN(_Reference):
    """mmdetection's PAFPN, over the whole RetinaNet pyramid (pafpn.yaml): the extras P6/P7 come
    from C5 first (as in FPN above), the top-down path runs over P3-P7, a 3x3 conv on every
    level, then the bottom-up path N_{i+1} = conv3x3(P_{i+1}) + conv3x3/2(N_i) and a 3x3 conv on
    every level above P3."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        c = out_channels
        self.lateral_convs = nn.ModuleList(nn.Conv2d(ci, c, 1) for ci in in_channels)
        self.p6_conv = nn.Conv2d(in_channels[-1], c, 3, stride=2, padding=1)
        self.p7_conv = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in LEVELS)
        self.downsample_convs = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1)
                                              for _ in LEVELS[1:])
        self.pafpn_convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in LEVELS[1:])

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        feats = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        p6 = self.p6_conv(inputs[-1])
        feats += [p6, self.p7_conv(F.relu(p6))]
        # top-down
        for i in range(len(feats) - 1, 0, -1):
            feats[i - 1] = feats[i - 1] + upsample_like(feats[i], feats[i - 1])
        inter_outs = [conv(x) for conv, x in zip(self.fpn_convs, feats)]
        # bottom-up
        for i in range(len(inter_outs) - 1):
            inter_outs[i + 1] = inter_outs[i + 1] + self.downsample_convs[i](inter_outs[i])
        outs = [inter_outs[0]]
        outs += [conv(x) for conv, x in zip(self.pafpn_convs, inter_outs[1:])]
        return tuple(outs)

    def module_pairs(self, neck):
        stem, cell = neck.graph.stem, neck.graph.cells[0]
        pairs = [(self.lateral_convs[i], stem.laterals[i]) for i in range(3)]
        pairs += [(self.p6_conv, stem.extras[0].body[0]), (self.p7_conv, stem.extras[1].body[1])]
        # pafpn.yaml: n4..n8 are the 3x3 convs on P3..P7; n9, n11, n13, n15 the bottom-up sums
        # (edge 1 is the stride-2 conv), n10, n12, n14, n16 the 3x3 convs after them.
        pairs += [(self.fpn_convs[k], cell.nodes[4 + k].post) for k in range(5)]
        pairs += [(self.downsample_convs[k], cell.nodes[9 + 2 * k].edges[1].conv) for k in range(4)]
        pairs += [(self.pafpn_convs[k], cell.nodes[10 + 2 * k].post) for k in range(4)]
        return pairs


# --------------------------------------------------------------------------- BiFPN


class FastNormalizedFusion(nn.Module):
    """EfficientDet: sum(relu(w_i) x_i) / (eps + sum relu(w_j))."""

    def __init__(self, n_inputs: int, eps: float = 1e-4):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_inputs))
        self.eps = eps

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        w = F.relu(self.weight)
        w = w / (w.sum() + self.eps)
        out = xs[0] * w[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * w[i]
        return out


class FNode(nn.Module):
    """One BiFPN node: fuse the (already resampled) inputs, swish, separable 3x3, BN."""

    def __init__(self, n_inputs: int, channels: int):
        super().__init__()
        self.fuse = FastNormalizedFusion(n_inputs)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        x = F.silu(self.fuse(xs))
        return self.bn(self.pointwise(self.depthwise(x)))


class BiFPNLayer(nn.Module):
    """One repeat of EfficientDet's P3-P7 BiFPN."""

    def __init__(self, channels: int):
        super().__init__()
        # top-down P6, P5, P4, P3 (out), then bottom-up P4, P5, P6, P7
        self.fnodes = nn.ModuleList([FNode(2, channels), FNode(2, channels), FNode(2, channels),
                                     FNode(2, channels), FNode(3, channels), FNode(3, channels),
                                     FNode(3, channels), FNode(2, channels)])

    def forward(self, feats: Sequence[Tensor]) -> List[Tensor]:
        p3, p4, p5, p6, p7 = feats
        td6, td5, td4, out3, out4, out5, out6, out7 = self.fnodes
        p6_td = td6([p6, upsample_like(p7, p6)])
        p5_td = td5([p5, upsample_like(p6_td, p5)])
        p4_td = td4([p4, upsample_like(p5_td, p4)])
        p3_out = out3([p3, upsample_like(p4_td, p3)])
        p4_out = out4([p4, p4_td, maxpool_down(p3_out)])
        p5_out = out5([p5, p5_td, maxpool_down(p4_out)])
        p6_out = out6([p6, p6_td, maxpool_down(p5_out)])
        p7_out = out7([p7, maxpool_down(p6_out)])
        return [p3_out, p4_out, p5_out, p6_out, p7_out]


def conv1x1_bn(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels))


class BiFPN(_Reference):
    """EfficientDet-D0's neck: laterals 1x1 conv + BN only where the width differs,
    P6 = maxpool(BN(conv1x1(C5))), P7 = maxpool(P6), `repeats` BiFPN layers."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, repeats: int = 3):
        super().__init__()
        c = out_channels
        self.laterals = nn.ModuleList(nn.Identity() if ci == c else conv1x1_bn(ci, c)
                                      for ci in in_channels)
        self.p6_reduce = nn.Identity() if in_channels[-1] == c else conv1x1_bn(in_channels[-1], c)
        self.layers = nn.ModuleList(BiFPNLayer(c) for _ in range(repeats))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        feats = [lateral(x) for lateral, x in zip(self.laterals, inputs)]
        p6 = maxpool_down(self.p6_reduce(inputs[-1]))
        feats += [p6, maxpool_down(p6)]
        for layer in self.layers:
            feats = layer(feats)
        return tuple(feats)

    def module_pairs(self, neck):
        stem = neck.graph.stem
        pairs = [(ref, stem.laterals[i]) for i, ref in enumerate(self.laterals)
                 if not isinstance(ref, nn.Identity)]
        if not isinstance(self.p6_reduce, nn.Identity):
            body = stem.extras[0].body                          # [conv, bn, maxpool]
            pairs += [(self.p6_reduce[0], body[0]), (self.p6_reduce[1], body[1])]
        for layer, cell in zip(self.layers, neck.graph.cells, strict=True):
            for fnode, node in zip(layer.fnodes, cell.nodes, strict=True):   # bifpn.yaml n0..n7
                pairs += [(fnode.fuse, node.combine),
                          (fnode.depthwise, node.post[1][0]),   # post: [swish, sepconv, bn]
                          (fnode.pointwise, node.post[1][1]),
                          (fnode.bn, node.post[2])]
        return pairs


# --------------------------------------------------------------------------- NAS-FPN

# The TF reference's NASFPN_BLOCK_SPECS: (level, combine, input offsets, is_output). Offsets
# 0..4 are P3..P7, each block appends one feature.
NASFPN_BLOCK_SPECS = [
    (4, "attention", (1, 3), False),
    (4, "sum", (1, 5), False),
    (3, "sum", (0, 6), True),
    (4, "sum", (6, 7), True),
    (5, "attention", (7, 8), True),
    (7, "attention", (6, 9), True),
    (6, "attention", (9, 10), True),
]


def global_attention(coarse: Tensor, fine: Tensor) -> Tensor:
    """TF reference: feat0 + feat1 * sigmoid(reduce_max(feat0)), feat0 the coarser input."""
    return coarse + fine * torch.sigmoid(torch.amax(coarse, dim=(2, 3), keepdim=True))


def resample(x: Tensor, level: int, target_level: int, ref: Tensor) -> Tensor:
    """The cell part of the TF reference's resample_feature_map (widths already match)."""
    if level < target_level:
        return maxpool_down(x, 2 ** (target_level - level))
    if level > target_level:
        return upsample_like(x, ref)
    return x


class ReluConvBN(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels))


class NASFPNCell(nn.Module):
    """One merge-cell stack, built from the block specs the way the TF reference does."""

    def __init__(self, channels: int, block_specs=NASFPN_BLOCK_SPECS, min_level: int = 3,
                 max_level: int = 7):
        super().__init__()
        self.block_specs = list(block_specs)
        self.min_level, self.max_level = min_level, max_level
        self.ops = nn.ModuleList(ReluConvBN(channels) for _ in self.block_specs)

    def forward(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        feats = list(inputs)
        feat_levels = list(range(self.min_level, self.max_level + 1))
        num_output_connections = [0] * len(feats)
        sizes = {lv: inputs[lv - self.min_level] for lv in feat_levels}   # a map at each level

        for (new_level, combine, (i0, i1), is_output), op in zip(self.block_specs, self.ops):
            ref = sizes[new_level]
            node0 = resample(feats[i0], feat_levels[i0], new_level, ref)
            node1 = resample(feats[i1], feat_levels[i1], new_level, ref)
            num_output_connections[i0] += 1
            num_output_connections[i1] += 1
            if combine == "sum":
                new_node = node0 + node1
            elif feat_levels[i0] >= feat_levels[i1]:
                new_node = global_attention(node0, node1)
            else:
                new_node = global_attention(node1, node0)
            # an output block also takes every same-level feature nothing has used yet
            if is_output:
                for j, (feat, level) in enumerate(zip(feats, feat_levels)):
                    if num_output_connections[j] == 0 and level == new_level:
                        num_output_connections[j] += 1
                        new_node = new_node + feat
            feats.append(op(new_node))
            feat_levels.append(new_level)
            num_output_connections.append(0)

        n_out = self.max_level - self.min_level + 1
        by_level = {feat_levels[i]: feats[i] for i in range(len(feats) - n_out, len(feats))}
        return [by_level[lv] for lv in range(self.min_level, self.max_level + 1)]


class NASFPN(_Reference):
    """NAS-FPN: laterals 1x1 conv + BN where the width differs, P6 = maxpool(P5),
    P7 = maxpool(P6), then `stacks` merge cells."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, stacks: int = 7):
        super().__init__()
        c = out_channels
        self.laterals = nn.ModuleList(nn.Identity() if ci == c else conv1x1_bn(ci, c)
                                      for ci in in_channels)
        self.cells = nn.ModuleList(NASFPNCell(c) for _ in range(stacks))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        feats = [lateral(x) for lateral, x in zip(self.laterals, inputs)]
        p6 = maxpool_down(feats[-1])
        feats += [p6, maxpool_down(p6)]
        for cell in self.cells:
            feats = cell(feats)
        return tuple(feats)

    def module_pairs(self, neck):
        stem = neck.graph.stem
        pairs = [(ref, stem.laterals[i]) for i, ref in enumerate(self.laterals)
                 if not isinstance(ref, nn.Identity)]
        for cell, compiled in zip(self.cells, neck.graph.cells, strict=True):
            # nasfpn.yaml's n0..n6 are the block specs in order; post = [relu, conv3x3, bn]
            for op, node in zip(cell.ops, compiled.nodes, strict=True):
                pairs += [(op[1], node.post[1]), (op[2], node.post[2])]
        return pairs


REFERENCES = {"fpn": FPN, "pafpn": PAFPN, "bifpn": BiFPN, "nasfpn": NASFPN}


def reference_for(name: str, in_channels: Sequence[int], out_channels: int, repeats: int = 1,
                  ) -> _Reference:
    """The hand-written counterpart of zoo genotype `name` (repeats: BiFPN / NAS-FPN stacks)."""
    if name in ("bifpn", "nasfpn"):
        return REFERENCES[name](in_channels, out_channels, repeats)
    return REFERENCES[name](in_channels, out_channels)
