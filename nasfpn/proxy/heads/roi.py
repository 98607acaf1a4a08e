"""RoI features in plain torch: RoIAlign (He et al., 2017) with `aligned=True` semantics, and the three
ways a two-stage head takes a RoI's features from the pyramid (the budget's `roi_levels`):

- `fpn`: one level, k = floor(k0 + log2(sqrt(wh) / canonical)), k0 = 4, clamped to the pyramid (FPN);
- `adaptive_max`: every level, each through its own fc, fused by element-wise max (PANet's adaptive
  feature pooling);
- `soft`: every level, fused with weights learnt per RoI and bin (AugFPN's soft RoI selection).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

CANONICAL_LEVEL = 4


def roi_align(feat: Tensor, rois: Tensor, spatial_scale: float, output: int = 7, sampling: int = 2,
              aligned: bool = True) -> Tensor:
    """(R, C, output, output) features of `rois` (R, 5: image index, x1, y1, x2, y2 in pixels) on
    `feat` (B, C, H, W): each bin the mean of sampling x sampling bilinear samples at regular
    positions. Sample rules as torchvision's: a sample more than one pixel outside the map is 0;
    one nearer is clamped to the border; `aligned` shifts the box by half a pixel, so that pixel
    centres sit at integer + 0.5 in box coordinates.

    Bilinear sampling on a grid is separable, and so is the mean over a bin's samples: a RoI's bins
    are A_y @ F @ A_x^T, with A_y (output, H) and A_x (output, W) holding each bin's interpolation
    weights along one axis; per image that is two matrix products (no gathers, a cheap backward)."""
    if len(rois) == 0:
        return feat.new_zeros(0, feat.shape[1], output, output)
    _, channels, height, width = feat.shape
    shift = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - shift, rois[:, 2] * spatial_scale - shift
    x2, y2 = rois[:, 3] * spatial_scale - shift, rois[:, 4] * spatial_scale - shift
    w, h = x2 - x1, y2 - y1
    if not aligned:  # the legacy rule: boxes of at least one pixel
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    steps = (torch.arange(output * sampling, device=feat.device, dtype=rois.dtype) + 0.5) / sampling
    along_y = _bin_weights(y1[:, None] + steps[None] * (h / output)[:, None], height, output, sampling)
    along_x = _bin_weights(x1[:, None] + steps[None] * (w / output)[:, None], width, output, sampling)
    along_y, along_x = along_y.to(feat.dtype), along_x.to(feat.dtype)
    image = rois[:, 0].long()
    grouped = bool((image[1:] >= image[:-1]).all())  # the heads' RoIs come image by image
    order = torch.arange(len(image), device=image.device) if grouped else torch.argsort(image, stable=True)
    along_y, along_x = along_y[order], along_x[order]
    counts = torch.bincount(image, minlength=feat.shape[0]).tolist()
    parts, start = [], 0
    for b, count in enumerate(counts):
        if count == 0:
            continue
        rows = slice(start, start + count)
        start += count
        # (r, p, H) @ (H, C*W) -> (r, p, C, W); then with (r, q, W) -> (r, C, p, q)
        left = along_y[rows].reshape(-1, height) @ feat[b].permute(1, 0, 2).reshape(height, -1)
        parts.append(torch.einsum("rpcw,rqw->rcpq", left.reshape(count, output, channels, width), along_x[rows]))
    out = torch.cat(parts)
    return out if grouped else out[torch.argsort(order)]


def _bin_weights(coords: Tensor, size: int, output: int, sampling: int) -> Tensor:
    """(R, output, size): each bin's weight on each pixel along one axis, the mean of its
    samples' bilinear weights (`coords` (R, output x sampling), in pixels)."""
    valid = ((coords >= -1.0) & (coords <= size)).to(coords.dtype)
    coords = coords.clamp(min=0)
    low = coords.floor().long()
    at_end = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(coords), coords - low.to(coords.dtype))
    weights = coords.new_zeros(*coords.shape, size)
    weights.scatter_add_(-1, low[..., None], ((1 - frac) * valid)[..., None])
    weights.scatter_add_(-1, high[..., None], (frac * valid)[..., None])
    return weights.reshape(coords.shape[0], output, sampling, size).mean(2)


def map_levels(boxes: Tensor, levels: Sequence[int], canonical: float = 224.0,
               canonical_level: int = CANONICAL_LEVEL) -> Tensor:
    """The index into `levels` of each box's level by FPN's rule, clamped to the pyramid."""
    side = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()
    k = torch.floor(canonical_level + torch.log2(side / canonical + 1e-8))
    k = k.clamp(min=min(levels), max=max(levels)).long()
    return k - min(levels)


class RoiFeatures(nn.Module):
    """RoIs (R, 5) and the pyramid -> one (R, hidden) vector per RoI: the pooled features of the
    budget's `roi_levels`, then two fcs (Faster R-CNN's 2-fc box head)."""

    def __init__(self, mode: str, channels: int, levels: Sequence[int], hidden: int = 256, output: int = 7,
                 sampling: int = 2, canonical: float = 224.0):
        super().__init__()
        self.mode, self.levels, self.canonical = mode, list(levels), canonical
        self.output, self.sampling = output, sampling
        inputs = channels * output * output
        count = len(self.levels) if mode == "adaptive_max" else 1
        self.fc1 = nn.ModuleList(nn.Linear(inputs, hidden) for _ in range(count))
        self.fc2 = nn.Linear(hidden, hidden)
        if mode == "soft":
            self.select = nn.Sequential(nn.Conv2d(channels * len(self.levels), channels, 1), nn.ReLU(),
                                        nn.Conv2d(channels, len(self.levels), 3, padding=1))

    def pooled(self, feats: Sequence[Tensor], rois: Tensor, level: int) -> Tensor:
        return roi_align(feats[level], rois, 1.0 / 2 ** self.levels[level], self.output, self.sampling)

    def forward(self, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        relu = torch.relu
        if self.mode == "fpn":
            which = map_levels(rois[:, 1:], self.levels, self.canonical)
            pooled = feats[0].new_zeros(len(rois), feats[0].shape[1], self.output, self.output)
            for level in range(len(self.levels)):
                rows = (which == level).nonzero().flatten()
                if len(rows):
                    pooled = pooled.index_put((rows,), self.pooled(feats, rois[rows], level).to(pooled.dtype))
            x = relu(self.fc1[0](pooled.flatten(1)))
        elif self.mode == "adaptive_max":
            x = torch.stack([relu(fc(self.pooled(feats, rois, level).flatten(1)))
                             for level, fc in enumerate(self.fc1)]).max(0).values
        else:
            every = torch.stack([self.pooled(feats, rois, level) for level in range(len(self.levels))], 1)
            weights = torch.softmax(self.select(every.flatten(1, 2)), 1)     # (R, L, out, out)
            x = relu(self.fc1[0]((every * weights[:, :, None]).sum(1).flatten(1)))
        return relu(self.fc2(x))

