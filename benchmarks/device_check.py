"""The GPU path end to end, timed: smoke and proxy trials of fpn on CUDA in fp32 and AMP (the
`auto` precision: bf16 where the GPU has it, else fp16), proxy trials under the other heads, then
a 4-trial smoke search with half a GPU per trial. Prints a table (trial time, images/s, AP, peak
GPU memory) and writes it to benchmarks/results/device_check.md; exits 1 when anything fails.
`benchmarks/device_check.sh` installs and runs it after the CUDA tests.

    python benchmarks/device_check.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from nasfpn.cli import main as nasfpn

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def trial(work: Path, budget: str, precision: str, head: str = "fcos") -> dict:
    out = work / f"{budget}-{precision}-{head}"
    start = time.perf_counter()
    if nasfpn(["train", "--neck", "fpn", "--budget", budget, "--set", f"precision={precision}", "--set", f"head={head}",
               "--device", "cuda", "--out", str(out), "--no-progress"]) != 0:
        raise SystemExit(f"device check: the {budget} trial in {precision} under {head} failed")
    m = json.loads((out / "metrics.json").read_text())
    m["wall_seconds"] = time.perf_counter() - start  # preparation on first use included
    return m


def search(work: Path) -> list[dict]:
    space = str(ROOT / "search_spaces" / "nasfpn_space.yaml")
    if nasfpn(["search", "--space", space, "--budget", "smoke", "--trials", "2", "--baselines", "fpn,bifpn",
               "--gpus-per-trial", "0.5", "--runs-dir", str(work), "--name", "gpu-search", "--no-progress"]) != 0:
        raise SystemExit("device check: the search failed")
    results = [json.loads(line) for f in (work / "gpu-search" / "tune").rglob("result.json")
               for line in f.read_text().splitlines() if line.strip()]
    final = [r for r in results if r.get("final") and not r.get("failed")]
    if len(final) < 2:  # ASHA may stop a sampled trial early; the two baselines always finish
        raise SystemExit(f"device check: {len(final)} of the search's trials finished")
    return final


def _row(what: str, m: dict) -> str:
    memory = m.get("peak_gpu_memory_bytes")
    return (f"| {what} | {m.get('precision', '?')} | {m['train_seconds']:.1f} | {m['images_per_second']:.0f} | "
            f"{m['AP'] * 100:.1f} | {memory / 2 ** 20:.0f} MiB |" if memory is not None else "| - |")


def main() -> int:
    if not torch.cuda.is_available():
        print("device check: no CUDA device here", file=sys.stderr)
        return 1
    gpu = torch.cuda.get_device_name(0)
    lines = [f"Device check on {gpu} (`bash benchmarks/device_check.sh`), torch {torch.__version__}, CUDA "
             f"{torch.version.cuda}; fpn, seed 0.", "",
             "| run | precision | training (s) | images/s | AP | peak GPU memory |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for budget in ("smoke", "proxy"):
            for precision in ("fp32", "auto"):
                m = trial(work, budget, precision)
                lines.append(_row(f"{budget} trial", m))
                print(lines[-1], flush=True)
        for head in ("retina", "faster_rcnn", "cornernet"):
            lines.append(_row(f"proxy trial, {head} head", trial(work, "proxy", "auto", head)))
            print(lines[-1], flush=True)
        for r in search(work):
            lines.append(_row(f"smoke search trial {r.get('neck', '')} (0.5 GPU)", r))
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "device_check.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
