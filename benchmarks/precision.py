"""Does bf16 pay on this CPU, and does it keep the proxy's ranking?

One run, at `--threads` CPU threads (default 2), on the `proxy` budget under the fcos head (the
preset's head when this was measured; its rows in precision.jsonl are fcos's):
- every zoo neck's whole proxy trial (training, evaluation, cost) in fp32 and in bf16, each pair
  run back to back: the wall-time ratio of the four timed necks (goal: bf16 at least 1.5x), the
  AP of each, the Kendall tau of the eight necks' ranking in fp32 against bf16 (goal: at least
  0.85) and each neck's AP difference against two seed std of the baselines table
  (runs/heads/fcos/table.csv, 3 seeds);
- the training FLOP/s of fpn in each precision as a fraction of the machine's matmul FLOP/s in
  that precision;
- the layers the trial is made of, forward + backward in fp32 and under bf16 autocast (which of
  them bf16 does not pay on), and training steps in channels-last memory format.

Trials append to benchmarks/results/precision.jsonl and a rerun skips what it holds:

    python benchmarks/precision.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from proxy_speed import matmul_flops_per_second, training_step_flops

import nasfpn
from nasfpn.dsl.budget import read_budget
from nasfpn.export.ranking import kendall_tau
from nasfpn.proxy.cost import latency_ms
from nasfpn.proxy.loop import fit
from nasfpn.proxy.precision import resolve
from nasfpn.proxy.session import ProxySession
from nasfpn.proxy.train import build_detector, run_trial

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TIMED = ("fpn", "nasfpn-proxy", "bifpn", "mlfpn")
PRECISIONS = ("fp32", "bf16")


def trials(session: ProxySession, necks: list[str], log: Path) -> dict[tuple[str, str], dict]:
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
                done[(row["neck"], row["precision"])] = row
            except (ValueError, KeyError):
                continue  # a torn last line: that trial runs again
    for k, neck in enumerate(necks):
        for precision in PRECISIONS[::1 if k % 2 == 0 else -1]:  # which runs first alternates
            if (neck, precision) in done:
                continue
            trial_session = dataclasses.replace(session, budget=dataclasses.replace(session.budget,
                                                                                    precision=precision))
            start = time.perf_counter()
            m = run_trial(nasfpn.load(neck), trial_session, seed=0, progress=False)
            row = {"neck": neck, "precision": m["precision"], "wall_seconds": time.perf_counter() - start,
                   "train_seconds": m["train_seconds"], "AP": m["AP"], "final_loss": m["final_losses"]["total"]}
            print(json.dumps(row), flush=True)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[(neck, precision)] = row
    return done


def layer_speedups(width: int, batch: int, side: int) -> list[tuple[str, float, float]]:
    """(layer, fp32 ms, bf16 ms) of forward + backward at one pyramid level of the proxy."""
    x = torch.randn(batch, width, side, side)
    convs = {"conv3x3": torch.nn.Conv2d(width, width, 3, padding=1),
             "conv1x1": torch.nn.Conv2d(width, width, 1),
             "depthwise3x3": torch.nn.Conv2d(width, width, 3, padding=1, groups=width),
             "group_norm": torch.nn.GroupNorm(8, width)}
    ops = {**{k: m for k, m in convs.items()},
           "max_pool3x3/2": lambda t: F.max_pool2d(t, 3, 2, 1),
           "avg_pool3x3/2": lambda t: F.avg_pool2d(t, 3, 2, 1),
           "bilinear_up2": lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False),
           "nearest_up2": lambda t: F.interpolate(t, scale_factor=2, mode="nearest")}
    rows = []
    for name, op in ops.items():
        times = []
        for precision in PRECISIONS:
            autocast = resolve(precision, "cpu").autocast

            def step(op=op, autocast=autocast):
                inp = x.clone().requires_grad_(True)
                with autocast():
                    y = op(inp)
                y.float().sum().backward()
            times.append(latency_ms(step, warmup=1, runs=20))
        rows.append((name, *times))
    return rows


def conv_sweep(batch: int) -> list[tuple[int, int, float, float]]:
    """(channels, map side, fp32 ms, bf16 ms) of a 3x3 conv's forward + backward: where bf16 starts to pay."""
    rows = []
    for channels, side in ((64, 16), (64, 32), (64, 64), (128, 32), (256, 32), (256, 64)):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        x = torch.randn(batch, channels, side, side)
        times = []
        for precision in PRECISIONS:
            autocast = resolve(precision, "cpu").autocast

            def step(autocast=autocast, conv=conv, x=x):
                with autocast():
                    y = conv(x.requires_grad_(True))
                y.float().sum().backward()
            times.append(latency_ms(step, warmup=1, runs=5))
        rows.append((channels, side, *times))
    return rows


def memory_format_steps(session: ProxySession, necks: tuple[str, ...], steps: int) -> list[tuple]:
    """(neck, precision, contiguous s, channels-last s) of `steps` training steps on batches held in memory."""
    batches = list(itertools.islice(session.train_batches(seed=0, images=False), steps))
    budget = session.budget
    rows = []
    for neck in necks:
        for precision in PRECISIONS:
            seconds = []
            for channels_last in (False, True):
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                held = [dataclasses.replace(b, feats=[f.float().contiguous(memory_format=fmt) for f in b.feats])
                        for b in batches]
                detector = build_detector(nasfpn.load(neck), session, seed=0).to(memory_format=fmt)
                r = fit(detector, iter(held), steps=len(held), lr=budget.lr, warmup=1,
                        device="cpu", train_backbone=False, backbone_lr_scale=0.1, progress=False,
                        precision=resolve(precision, "cpu"))
                seconds.append(r["train_seconds"])
            rows.append((neck, precision, *seconds))
    return rows


def seed_std(table: Path) -> dict[str, float]:
    with table.open() as f:
        return {r["neck"]: float(r["AP_std"]) for r in csv.DictReader(f)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", help="backbone/feature cache (default ~/.cache/nasfpn)")
    parser.add_argument("--out", default=str(RESULTS / "precision.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not resolve("auto", "cpu").name == "bf16":
        print("this CPU has no native bf16: nothing to measure", file=sys.stderr)
        return 1
    budget = read_budget("proxy", ["precision=fp32", "head=fcos"])
    session = ProxySession.open("synthetic", budget, cache=args.cache, progress=False)
    necks = nasfpn.zoo_names("genotype")
    memory_format_steps(session, ("fpn",), steps=10)  # warm-up: kernels of both precisions picked
    rows = trials(session, necks, Path(args.out).with_suffix(".jsonl"))

    peak = {p: matmul_flops_per_second(dtype=resolve(p, "cpu").dtype) for p in PRECISIONS}
    step_flops = training_step_flops(nasfpn.load("fpn"), session, budget.batch)
    layers = layer_speedups(budget.width, budget.batch, budget.image_size // 8)
    sweep = conv_sweep(budget.batch)
    format_steps = 40
    formats = memory_format_steps(session, TIMED, format_steps)
    std = seed_std(ROOT / "runs" / "heads" / "fcos" / "table.csv")

    wall = {p: sum(rows[(n, p)]["wall_seconds"] for n in TIMED) for p in PRECISIONS}
    train = {p: sum(rows[(n, p)]["train_seconds"] for n in TIMED) for p in PRECISIONS}
    ap = {p: [rows[(n, p)]["AP"] for n in necks] for p in PRECISIONS}
    tau = kendall_tau(ap["fp32"], ap["bf16"])
    lines = [f"Precision on this CPU (`python benchmarks/precision.py --threads {args.threads}`), torch "
             f"{torch.__version__}, {args.threads} CPU threads, budget proxy under the fcos head, seed 0.", "",
             f"- whole trials of {', '.join(TIMED)} (training, evaluation, cost): fp32 {wall['fp32']:.0f} s, "
             f"bf16 {wall['bf16']:.0f} s: **{wall['fp32'] / wall['bf16']:.2f}x** (goal 1.5x); their training "
             f"alone {train['fp32'] / train['bf16']:.2f}x",
             f"- ranking of the {len(necks)} zoo necks by AP, fp32 against bf16: Kendall tau **{tau:.3f}** "
             "(goal 0.85)", "",
             "| neck | fp32 AP | bf16 AP | bf16 - fp32 | 2 seed std (fp32) | within | fp32 trial (s) | bf16 trial (s) "
             "| ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for n in necks:
        a, b = rows[(n, "fp32")], rows[(n, "bf16")]
        diff, bound = (b["AP"] - a["AP"]) * 100, 2 * std.get(n, float("nan")) * 100
        lines.append(f"| {n} | {a['AP'] * 100:.1f} | {b['AP'] * 100:.1f} | {diff:+.1f} | {bound:.1f} | "
                     f"{'yes' if abs(diff) <= bound else 'no'} | {a['wall_seconds']:.0f} | {b['wall_seconds']:.0f} | "
                     f"{a['wall_seconds'] / b['wall_seconds']:.2f} |")
    lines += ["", "Training FLOP/s of fpn (FLOPs of one forward + backward step x steps / training time) against the "
              "matmul FLOP/s of the same precision (2048^2, median of 10):", "",
              "| precision | training GFLOP/s | matmul GFLOP/s | fraction |", "|---|---|---|---|"]
    for p in PRECISIONS:
        achieved = step_flops * budget.steps / rows[("fpn", p)]["train_seconds"]
        lines.append(f"| {p} | {achieved / 1e9:.1f} | {peak[p] / 1e9:.1f} | {achieved / peak[p] * 100:.1f} % |")
    lines += ["", f"Layers, forward + backward at the proxy's P3 ({budget.batch} x {budget.width} x "
              f"{budget.image_size // 8} x {budget.image_size // 8}), median of 20:", "",
              "| layer | fp32 (ms) | bf16 autocast (ms) | fp32 / bf16 |", "|---|---|---|---|"]
    lines += [f"| {n} | {a:.2f} | {b:.2f} | {a / b:.2f} |" for n, a, b in layers]
    lines += ["", f"A 3x3 conv, forward + backward at batch {budget.batch}, by width and map side (the proxy's P3 is "
              f"{budget.width} x {budget.image_size // 8}), median of 5:", "",
              "| channels | map | fp32 (ms) | bf16 autocast (ms) | fp32 / bf16 |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {side} x {side} | {a:.2f} | {b:.2f} | {a / b:.2f} |" for c, side, a, b in sweep]
    lines += ["", f"{format_steps} training steps on batches held in memory, contiguous against channels-last:", "",
              "| neck | precision | contiguous (s) | channels-last (s) | contiguous / channels-last |",
              "|---|---|---|---|---|"]
    lines += [f"| {n} | {p} | {a:.2f} | {b:.2f} | {a / b:.2f} |" for n, p, a, b in formats]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
