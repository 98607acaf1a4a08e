"""What does compiling a genotype cost at run time, against writing the neck by hand?

For the zoo necks fpn, pafpn, bifpn and nasfpn (at the genotype's own width and depth), times a
training step (forward + backward) of the compiled module (`nasfpn.build_neck`) and of the
hand-written plain-torch neck of the same architecture in tests/reference_necks.py, after copying
the compiled weights into it and checking that both compute the same outputs. The two are
interleaved run by run (alternating which goes first), so drifting machine load hits both alike;
the table gives the median of the timed runs and compiled / hand-written.

Writes benchmarks/results/compile_overhead.{md,csv}.

    python benchmarks/compile_overhead.py --threads 2 --runs 20 --image-size 256 --batch 2

On a machine that other jobs keep busy, OpenMP's spinning worker threads make every op wait for
a descheduled thread (steps 10-100x slower, mostly noise): set OMP_WAIT_POLICY=PASSIVE there, or
use --threads 1 --clock cpu, which the other jobs barely disturb.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nasfpn  # noqa: E402
from tests.reference_necks import reference_for  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NECKS = ["fpn", "pafpn", "bifpn", "nasfpn"]
FIELDS = ["neck", "compiled_ms", "hand_written_ms", "ratio", "compiled_iqr_ms", "hand_written_iqr_ms",
          "max_abs_diff", "params", "runs", "image_size", "batch", "threads", "clock", "in_channels", "width"]


def backbone_maps(batch: int, image_size: int, in_channels: list[int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sizes = [-(-image_size // 2 ** (3 + k)) for k in range(len(in_channels))]   # ceil: stride 8, 16, ..
    return [torch.randn(batch, c, n, n, generator=gen) for c, n in zip(in_channels, sizes)]


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def step(module: torch.nn.Module, inputs: list[torch.Tensor], clock=time.perf_counter) -> float:
    """One training step's worth of neck work: forward, a scalar loss, backward. Returns ms."""
    xs = [x.detach().requires_grad_(True) for x in inputs]   # the backbone is trained too
    module.zero_grad(set_to_none=True)
    start = clock()
    outs = module(xs)
    loss = outs[0].mean()
    for o in outs[1:]:
        loss = loss + o.mean()
    loss.backward()
    return (clock() - start) * 1000.0


def check_same(neck, ref, inputs) -> float:
    """Both modules in train mode on copies (BN batch statistics), outputs must agree."""
    a, b = copy.deepcopy(neck).train(), copy.deepcopy(ref).train()
    with torch.no_grad():
        got, want = a(inputs), b(inputs)
    diff = max((x - y).abs().max().item() for x, y in zip(got, want))
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    return diff


def quartiles(values: list[float]) -> float:
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def bench(name: str, args) -> dict:
    torch.manual_seed(0)
    g = nasfpn.load(name)
    neck = nasfpn.build_neck(g, args.in_channels, args.width)
    ref = reference_for(name, args.in_channels, neck.out_channels, g.cell.repeats).load_from(neck)
    inputs = backbone_maps(args.batch, args.image_size, args.in_channels)
    diff = check_same(neck, ref, inputs)
    neck.train()
    ref.train()
    clock = CLOCKS[args.clock]
    for _ in range(args.warmup):
        step(neck, inputs, clock)
        step(ref, inputs, clock)
    compiled, hand = [], []
    for i in range(args.runs):
        if i % 2 == 0:
            compiled.append(step(neck, inputs, clock))
            hand.append(step(ref, inputs, clock))
        else:
            hand.append(step(ref, inputs, clock))
            compiled.append(step(neck, inputs, clock))
    c, h = statistics.median(compiled), statistics.median(hand)
    return {"neck": name, "compiled_ms": round(c, 2), "hand_written_ms": round(h, 2),
            "ratio": round(c / h, 3), "compiled_iqr_ms": round(quartiles(compiled), 2),
            "hand_written_iqr_ms": round(quartiles(hand), 2), "max_abs_diff": f"{diff:.2e}",
            "params": sum(p.numel() for p in neck.parameters()), "runs": args.runs,
            "image_size": args.image_size, "batch": args.batch, "threads": args.threads,
            "clock": args.clock,
            "in_channels": "/".join(map(str, args.in_channels)), "width": neck.out_channels}


def markdown(rows: list[dict], args, command: str) -> str:
    lines = [
        "# Compiled vs hand-written necks: forward + backward time",
        "",
        f"`{command}`",
        "",
        f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.processor() or platform.machine()}; "
        f"batch {args.batch}, {args.image_size}x{args.image_size} image (backbone maps "
        f"{'/'.join(map(str, args.in_channels))} channels at stride 8/16/32), neck width "
        f"{args.width or 'of each genotype'}, train mode; "
        f"median of {args.runs} interleaved runs after {args.warmup} warm-up runs each, "
        + ("wall-clock time" if args.clock == "wall" else "CPU time of the (only) thread")
        + f"; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}.",
        "",
        "| neck | compiled ms | hand-written ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['neck']} | {r['compiled_ms']:.1f} | {r['hand_written_ms']:.1f} | {r['ratio']:.3f} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per module (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per module first")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--in-channels", type=lambda s: [int(c) for c in s.split(",")],
                    default=[512, 1024, 2048], help="backbone widths C3,C4,C5")
    ap.add_argument("--width", type=int, default=None,
                    help="neck channels (default: each genotype's own, e.g. 256 for fpn, 64 for bifpn)")
    ap.add_argument("--necks", type=lambda s: s.split(","), default=NECKS)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: elapsed time (default); cpu: CPU time of the calling thread, which a "
                         "busy machine's other jobs barely disturb (needs --threads 1)")
    ap.add_argument("--out", type=Path, default=RESULTS / "compile_overhead",
                    help="writes OUT.md and OUT.csv")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu measures the calling thread only: use it with --threads 1")
    torch.set_num_threads(args.threads)
    command = "python benchmarks/compile_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if "OMP_WAIT_POLICY" in os.environ:
        command = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} {command}"

    rows = []
    for name in args.necks:
        row = bench(name, args)
        rows.append(row)
        print(f"{name}: compiled {row['compiled_ms']:.1f} ms, hand-written {row['hand_written_ms']:.1f} ms, "
              f"ratio {row['ratio']:.3f} (max |diff| {row['max_abs_diff']})", flush=True)

    table = markdown(rows, args, command)
    print()
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    with args.out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
