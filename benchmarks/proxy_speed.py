"""How fast is one `proxy` trial of fpn, and how well does training use the machine?

Prints (and writes to benchmarks/results/proxy_speed.md) the wall time of one proxy trial of the
`fpn` neck on 2 CPU threads under the fcos head (the in-memory comparison below assigns FCOS
targets; `benchmarks/heads.py --timing` times the other heads against it), split into training,
evaluation and cost measurement; the one-time preparation it reuses (dataset, backbone pretraining,
feature cache); and the FLOP/s the training achieves (FLOPs of one forward+backward step counted by
FlopCounterMode, times steps, over the training time) as a fraction of the machine's matmul FLOP/s
in the trial's precision (the proxy's `auto`: bf16 on a CPU with native bf16, else fp32), measured
in the same run.

It also trains the same trial from batches held in memory (every feature read into RAM, every
FCOS target assigned beforehand, as the trainer did before data was streamed), alternating with
the streamed trainer (memory-mapped features, targets assigned per batch) twice each: the ratio
of their training times is what streaming costs.

    python benchmarks/proxy_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import nasfpn
from nasfpn.dsl.budget import read_budget
from nasfpn.proxy.cost import count_flops
from nasfpn.proxy.data import load_data
from nasfpn.proxy.loader import Batch, TrainOrder
from nasfpn.proxy.session import ProxySession
from nasfpn.proxy.targets import assign_batch
from nasfpn.proxy.train import build_detector, run_trial

RESULTS = Path(__file__).resolve().parent / "results"


def matmul_flops_per_second(n: int = 2048, runs: int = 10, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
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
    first = next(session.train_batches(seed=0, images=False))
    feats = [f.float() for f in first.feats]

    def step():
        detector.loss(detector(None, feats, first.targets), first.targets)["total"].backward()

    return count_flops(step)


def in_memory(session: ProxySession) -> ProxySession:
    """The session with its training batches served from RAM: features read in whole, targets
    assigned once for every image (the trainer's data path before streaming)."""
    feats = [torch.from_numpy(np.array(f)) for f in session.train_feats]
    side = session.frame.square
    locs = session.targets.locations((side, side))
    split = session.data.train
    cls, box = [], []
    for start in range(0, len(split), 256):
        rows = range(start, min(start + 256, len(split)))
        c, b = assign_batch(locs, [torch.from_numpy(split.boxes[i]) for i in rows],
                            [torch.from_numpy(split.labels[i]) for i in rows], len(session.data.classes))
        cls.append(c)
        box.append(b)
    cls_all, box_all = torch.cat(cls), torch.cat(box)
    ones, extents = torch.ones(session.budget.batch, dtype=torch.float64), torch.full((session.budget.batch, 2), side)

    def train_batches(seed: int, images: bool):
        for keys in TrainOrder(len(split), session.budget.batch, session.budget.steps, seed):
            idx = torch.as_tensor([i for i, _ in keys])
            yield Batch(index=idx, scales=ones[:len(idx)], extents=extents[:len(idx)], canvas=(side, side),
                        targets={"cls": cls_all[idx], "box": box_all[idx]}, feats=[f[idx] for f in feats])

    copy = dataclasses.replace(session)
    object.__setattr__(copy, "train_batches", train_batches)
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--neck", default="fpn")
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--out", default=str(RESULTS / "proxy_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budget = read_budget("proxy", ["head=fcos"])

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
    memory = in_memory(session)
    streamed_s, memory_s = [metrics["train_seconds"]], []
    for _ in range(2):
        held = run_trial(genotype, memory, seed=0, progress=False, measure=False)
        assert held["final_losses"] == metrics["final_losses"], "the two data paths train differently"
        memory_s.append(held["train_seconds"])
        if len(streamed_s) < 2:
            streamed_s.append(run_trial(genotype, session, seed=0, progress=False, measure=False)["train_seconds"])
    ratio = statistics.median(streamed_s) / statistics.median(memory_s)

    step_flops = training_step_flops(genotype, session, budget.batch)
    achieved = step_flops * budget.steps / metrics["train_seconds"]
    precision = metrics["precision"]
    peak = matmul_flops_per_second(dtype={"bf16": torch.bfloat16}.get(precision, torch.float32))
    rows = [
        (f"one proxy trial of {args.neck} in {precision} (wall)", f"{trial_s:.1f} s", "goal <= 60 s"),
        ("  of which training", f"{metrics['train_seconds']:.1f} s",
         f"{budget.steps} steps x {budget.batch} images, {metrics['images_per_second']:.0f} images/s"),
        ("  evaluation + cost measurement", f"{trial_s - metrics['train_seconds']:.1f} s",
         f"{budget.val_images} val images, COCO AP; params, FLOPs, latency"),
        ("AP of that trial", f"{metrics['AP'] * 100:.1f}", ""),
        ("training from streamed batches / from batches in memory", f"{ratio:.3f}",
         f"goal <= 1.10; medians of {', '.join(f'{t:.1f}' for t in streamed_s)} s and "
         f"{', '.join(f'{t:.1f}' for t in memory_s)} s, same losses"),
        ("training FLOPs per step (fwd+bwd)", f"{step_flops / 1e9:.2f} GFLOP", "FlopCounterMode, incl. resampling"),
        ("training throughput", f"{achieved / 1e9:.1f} GFLOP/s", ""),
        (f"machine {precision} matmul (2048^2)", f"{peak / 1e9:.1f} GFLOP/s", f"{args.threads} threads, median of 10"),
        ("training / matmul", f"{achieved / peak * 100:.1f} %", ""),
        ("one-time: synthetic data generation", f"{data_s:.1f} s", f"{budget.train_images}+{budget.val_images} images"),
        ("one-time: backbone pretraining + feature cache", f"{prepare_s:.1f} s",
         "0 s when already cached on disk"),
    ]
    lines = [f"Proxy speed under the fcos head (`python benchmarks/proxy_speed.py --threads {args.threads}`), "
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
