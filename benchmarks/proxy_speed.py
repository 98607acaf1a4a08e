"""How fast is one `proxy` trial of fpn, and how well does training use the machine?

Prints (and writes to benchmarks/results/proxy_speed.md) the wall time of one proxy trial of the
`fpn` neck on 2 CPU threads, split into training, evaluation and cost measurement; the one-time
preparation it reuses (dataset, backbone pretraining, feature cache); and the FLOP/s the training
achieves (FLOPs of one forward+backward step counted by FlopCounterMode, times steps, over the
training time) as a fraction of the machine's fp32 matmul FLOP/s measured in the same run.

    python benchmarks/proxy_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import nasfpn
from nasfpn.dsl.budget import read_budget
from nasfpn.proxy.cost import count_flops
from nasfpn.proxy.data import load_data
from nasfpn.proxy.losses import detection_loss
from nasfpn.proxy.session import ProxySession
from nasfpn.proxy.train import build_detector, run_trial

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_flops_per_second(n: int = 2048, runs: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times)


def training_step_flops(genotype, session: ProxySession, batch: int) -> int:
    """FLOPs of one training step (forward, losses, backward) on cached features."""
    detector = build_detector(genotype, session, seed=0).train()
    detector.backbone.eval()
    idx = torch.arange(batch)
    feats = [f[idx].float() for f in session.train_feats]
    points = session.locs.points

    def step():
        cls, box, ctr = detector(None, feats)
        losses = detection_loss(cls.flatten(0, 1), box.flatten(0, 1), ctr.flatten(), points.repeat(batch, 1),
                                session.train_targets.cls[idx].flatten(),
                                session.train_targets.box[idx].flatten(0, 1))
        losses["total"].backward()

    return count_flops(step)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--neck", default="fpn")
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--out", default=str(RESULTS / "proxy_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = read_budget("proxy")

    start = time.perf_counter()  # the session's two steps timed apart: loading, then preparing
    data = load_data("synthetic", budget.image_size, budget.train_images, budget.val_images, cache=args.cache)
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    session = ProxySession.from_data(data, budget, cache=args.cache, progress=False)
    prepare_s = time.perf_counter() - start

    genotype = nasfpn.load(args.neck)
    start = time.perf_counter()
    metrics = run_trial(genotype, session, seed=0, progress=False)
    trial_s = time.perf_counter() - start

    step_flops = training_step_flops(genotype, session, budget.batch)
    achieved = step_flops * budget.steps / metrics["train_seconds"]
    peak = matmul_flops_per_second()
    rows = [
        ("one proxy trial of " + args.neck + " (wall)", f"{trial_s:.1f} s", "goal <= 60 s"),
        ("  of which training", f"{metrics['train_seconds']:.1f} s",
         f"{budget.steps} steps x {budget.batch} images, {metrics['images_per_second']:.0f} images/s"),
        ("  evaluation + cost measurement", f"{trial_s - metrics['train_seconds']:.1f} s",
         f"{budget.val_images} val images, COCO AP; params, FLOPs, latency"),
        ("AP of that trial", f"{metrics['AP'] * 100:.1f}", ""),
        ("training FLOPs per step (fwd+bwd)", f"{step_flops / 1e9:.2f} GFLOP", "FlopCounterMode, incl. resampling"),
        ("training throughput", f"{achieved / 1e9:.1f} GFLOP/s", ""),
        ("machine fp32 matmul (2048^2)", f"{peak / 1e9:.1f} GFLOP/s", f"{args.threads} threads, median of 10"),
        ("training / matmul", f"{achieved / peak * 100:.1f} %", ""),
        ("one-time: synthetic data generation", f"{data_s:.1f} s", f"{budget.train_images}+{budget.val_images} images"),
        ("one-time: backbone pretraining + feature cache", f"{prepare_s:.1f} s",
         "0 s when already cached on disk"),
    ]
    lines = [f"Proxy speed (`python benchmarks/proxy_speed.py --threads {args.threads}`), "
             f"torch {torch.__version__}, {args.threads} CPU threads.", "",
             "| what | measured | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
