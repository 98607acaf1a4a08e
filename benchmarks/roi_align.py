"""nasfpn's RoIAlign (two matrix products per image, nasfpn/proxy/heads/roi.py) against a direct
per-RoI computation of the same definition (each RoI's bilinear samples gathered and averaged per
bin, one RoI at a time): agreement and speed, forward and forward + backward, at the faster_rcnn
proxy's shapes (16 images, 64 channels, P3 of a 128-pixel image, 64 RoIs per image, 7x7 bins of
2x2 samples).

    python benchmarks/roi_align.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "roi_align.md"


def per_roi(feat: torch.Tensor, rois: torch.Tensor, scale: float, output: int = 7, sampling: int = 2) -> torch.Tensor:
    """The definition, one RoI at a time: sample coordinates, torchvision's border rules, four
    gathered neighbours weighted, the mean over each bin's samples."""
    _, channels, height, width = feat.shape
    steps = (torch.arange(output * sampling, dtype=feat.dtype) + 0.5) / sampling
    out = []
    for b, x1, y1, x2, y2 in rois.tolist():
        x1, y1, x2, y2 = x1 * scale - 0.5, y1 * scale - 0.5, x2 * scale - 0.5, y2 * scale - 0.5
        ys, xs = y1 + steps * (y2 - y1) / output, x1 + steps * (x2 - x1) / output
        plane = feat[int(b)]                                                 # (C, H, W)

        def axis(c, size):
            valid = (c >= -1) & (c <= size)
            c = c.clamp(min=0)
            low = c.floor().long()
            end = low >= size - 1
            low = low.clamp(max=size - 1)
            high = torch.where(end, low, low + 1)
            frac = torch.where(end, torch.zeros_like(c), c - low.to(c.dtype))
            return low, high, frac, valid

        y0, y1_, fy, vy = axis(ys, height)
        x0, x1_, fx, vx = axis(xs, width)
        value = ((1 - fy)[:, None] * (1 - fx)[None] * plane[:, y0][:, :, x0]
                 + (1 - fy)[:, None] * fx[None] * plane[:, y0][:, :, x1_]
                 + fy[:, None] * (1 - fx)[None] * plane[:, y1_][:, :, x0]
                 + fy[:, None] * fx[None] * plane[:, y1_][:, :, x1_]) * (vy[:, None] & vx[None])
        out.append(value.reshape(channels, output, sampling, output, sampling).mean((2, 4)))
    return torch.stack(out)


def rois_for(images: int, per_image: int, side: float, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(images * per_image, 2, generator=generator) * side * 0.9
    wh = torch.rand(images * per_image, 2, generator=generator) * side * 0.5 + 2
    image = torch.arange(images).repeat_interleave(per_image).float()[:, None]
    return torch.cat([image, xy, (xy + wh).clamp(max=side)], 1)


def median_seconds(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from nasfpn.proxy.heads.roi import roi_align

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images, per_image, channels, side, stride = 16, 64, 64, 128.0, 8
    feat = torch.randn(images, channels, int(side) // stride, int(side) // stride, generator=g)
    rois = rois_for(images, per_image, side, g)
    scale = 1.0 / stride

    exact = (roi_align(feat.double(), rois.double(), scale) - per_roi(feat.double(), rois.double(), scale)).abs().max()
    single = (roi_align(feat, rois, scale) - per_roi(feat.double(), rois.double(), scale).float()).abs().max()

    def forward_backward(fn):
        def run():
            f = feat.clone().requires_grad_(True)
            fn(f, rois, scale).sum().backward()
        return run

    rows = [("forward", median_seconds(lambda: roi_align(feat, rois, scale), args.runs),
             median_seconds(lambda: per_roi(feat, rois, scale), max(2, args.runs // 5))),
            ("forward + backward", median_seconds(forward_backward(roi_align), args.runs),
             median_seconds(forward_backward(per_roi), max(2, args.runs // 5)))]
    lines = [f"RoIAlign, {images} images x {per_image} RoIs, {channels} x {int(side) // stride} x "
             f"{int(side) // stride} features (stride {stride}), 7x7 bins of 2x2 samples, {args.threads} CPU "
             f"threads, torch {torch.__version__} (`python benchmarks/roi_align.py --threads {args.threads}`).", "",
             f"- agreement with the per-RoI computation: largest difference {exact:.1e} in float64, {single:.1e} "
             "in float32 (nasfpn's in float32 against the reference in float64)", "",
             "| pass | nasfpn (ms) | per RoI (ms) | speed-up |", "|---|---|---|---|"]
    for name, ours, theirs in rows:
        lines.append(f"| {name} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} | {theirs / ours:.1f}x |")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
