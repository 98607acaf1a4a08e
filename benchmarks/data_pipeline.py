"""Streamed COCO at scale: loader throughput, peak memory flat in the number of images, time to the
first training step.

Writes a COCO-format directory of N JPEG images at 640x480 for each N of --sizes (scenes of the
built-in synthetic renderer, 200 distinct ones repeated under N file names: decoding costs what
it costs for any JPEG of this size), then for each N:

- runs `nasfpn train --data coco:DIR --budget B --set image_size=512 --set steps=50` as a user
  would, B being a ResNet-18 budget with the frozen backbone run live and flip + scale-jitter
  augmentation (its weights: a seeded random init saved here, as heavy as ImageNet's), and
  samples the memory of its process tree every 0.2 s: peak RSS of the main process, peak PSS of
  the tree (the loader workers included; shared pages counted once);
- times the training loader alone (512 px, augmentation, 1 and 2 workers) against the images
  per second one training step consumes.

Rows are appended to results/data_pipeline.jsonl (a size already measured on this machine is
skipped; rerun with --again) and results/data_pipeline.md is rewritten from them.

    python benchmarks/data_pipeline.py --sizes 2000,20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCENES = 200
VAL_IMAGES = 256


def write_coco(root: Path, n: int) -> Path:
    """root/coco-N: N train images (and VAL_IMAGES val images) at 640x480, COCO annotations."""
    from PIL import Image

    from nasfpn.proxy.data.synthetic import CLASSES, render

    out = root / f"coco-{n}"
    if (out / "annotations" / "instances_val.json").exists():
        return out
    scenes = root / "scenes"
    scenes.mkdir(parents=True, exist_ok=True)
    boxes_of = []
    for s in range(SCENES):
        path = scenes / f"{s}.jpg"
        img, boxes, labels = render(0, "train", s, 640)
        keep = boxes[:, 1] < 480  # the scene cropped to 640x480
        boxes, labels = boxes[keep], labels[keep]
        boxes[:, 3] = np.minimum(boxes[:, 3], 480)
        if not path.exists():
            Image.fromarray((img[:480] * 255).astype(np.uint8)).save(path, quality=90)
        boxes_of.append((boxes, labels))
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", VAL_IMAGES)):
        folder = out / split
        folder.mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            s = (i * 7 + (split == "val")) % SCENES
            name = f"{i:06d}.jpg"
            target = folder / name
            if not target.exists():
                os.link(scenes / f"{s}.jpg", target)
            images.append({"id": i + 1, "file_name": name, "width": 640, "height": 480})
            for box, label in zip(*boxes_of[s]):
                x1, y1, x2, y2 = (float(v) for v in box)
                if x2 - x1 >= 1 and y2 - y1 >= 1:
                    annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                        "iscrowd": 0})
        categories = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
        (out / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return out


def write_budget(root: Path) -> Path:
    import torch

    from nasfpn.proxy.backbones import new_backbone

    weights = root / "resnet18-seed0.pth"
    if not weights.exists():
        torch.manual_seed(0)
        torch.save(new_backbone("resnet18").state_dict(), weights)
    budget = root / "coco-resnet18.yaml"
    budget.write_text(f"# the data-pipeline benchmark's budget: ResNet-18 frozen and run live, augmentation on\n"
                      f"base: proxy\nbackbone: resnet18\nbackbone_weights: {weights}\nbackbone_mode: frozen\n"
                      f"augment: flip+jitter\njitter: [0.8, 1.25]\ntrain_images: 100000000\n"
                      f"val_images: {VAL_IMAGES}\nwarmup: 5\n")
    return budget


def _tree_memory(proc) -> tuple[int, int]:
    """(RSS of the process, PSS of it and its descendants), bytes."""
    import psutil

    rss = proc.memory_info().rss
    pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            pss += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss, pss


def measure_train(data: Path, budget: Path, out: Path, cache: str, threads: int) -> dict:
    import psutil

    cmd = [sys.executable, "-c", "import sys; from nasfpn.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", "--neck", "fpn", "--data", f"coco:{data}", "--budget", str(budget),
           "--set", "image_size=512", "--set", "steps=50", "--out", str(out), "--no-progress",
           "--threads", str(threads), "--cache", cache]
    started = time.time()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = psutil.Process(child.pid)
    peak_rss = peak_pss = 0
    while child.poll() is None:
        try:
            rss, pss = _tree_memory(proc)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    output = child.stdout.read()
    if child.returncode != 0:
        raise SystemExit(f"nasfpn train failed ({child.returncode}):\n{output}")
    wall = time.time() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_seconds": wall, "first_step_seconds": metrics["first_step_at"] - started,
            "train_seconds": metrics["train_seconds"], "train_images_per_second": metrics["images_per_second"],
            "peak_rss_bytes": peak_rss, "peak_tree_pss_bytes": peak_pss, "AP": metrics["AP"]}


def measure_loader(data: Path, budget: Path, cache: str, workers: int, batches: int = 30) -> float:
    """Images per second the training loader delivers (decode, resize, augment, pad, targets)."""
    from nasfpn.dsl.budget import read_budget
    from nasfpn.proxy.session import ProxySession

    b = read_budget(str(budget), ["image_size=512", f"steps={batches + 3}"])
    session = ProxySession.open(f"coco:{data}", b, cache=cache, progress=False, workers=workers)
    stream = session.train_batches(seed=0, images=True)
    for _ in range(3):  # the workers' start-up
        next(stream)
    start = time.perf_counter()
    n = sum(len(next(stream).index) for _ in range(batches))
    return n / (time.perf_counter() - start)


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line of an interrupted run
    return rows


def summarize(rows: list[dict], out: Path) -> None:
    rows = sorted(rows, key=lambda r: r["images"])
    lines = ["# Streamed COCO data pipeline", "",
             "`python benchmarks/data_pipeline.py --sizes 2000,20000` "
             f"({rows[0]['machine'] if rows else ''}, {rows[0]['threads'] if rows else ''} torch threads): "
             "`nasfpn train --data coco:DIR --set image_size=512 --set steps=50` with a ResNet-18 budget "
             "(frozen, run live; flip + scale jitter), 640x480 JPEGs.", "",
             "| train images | peak RSS (main) | peak PSS (with workers) | start to first step | training "
             "consumes | loader, 1 worker | loader, 2 workers | wall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gb = 2 ** 30
        lines.append(f"| {r['images']} | {r['peak_rss_bytes'] / gb:.2f} GB | {r['peak_tree_pss_bytes'] / gb:.2f} GB"
                     f" | {r['first_step_seconds']:.1f} s | {r['train_images_per_second']:.1f} img/s"
                     f" | {r['loader_1']:.1f} img/s | {r['loader_2']:.1f} img/s | {r['wall_seconds']:.0f} s |")
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_bytes"] / rows[0]["peak_rss_bytes"]
        lines += ["", f"Peak RSS at {rows[-1]['images']} images / at {rows[0]['images']}: {ratio:.2f}x "
                      f"(goal: at most 1.2x, and under 4 GB)."]
    out.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--root", default="/tmp/nasfpn-data-pipeline", help="where the COCO directories go")
    parser.add_argument("--cache", default=None, help="nasfpn cache (default: ROOT/cache)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--again", action="store_true", help="measure sizes already in the results")
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    cache = args.cache or str(root / "cache")
    RESULTS.mkdir(parents=True, exist_ok=True)
    jsonl = RESULTS / "data_pipeline.jsonl"
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    done = {r["images"] for r in load_rows(jsonl) if r.get("machine") == machine}
    budget = write_budget(root)
    for n in (int(s) for s in args.sizes.split(",")):
        if n in done and not args.again:
            continue
        data = write_coco(root, n)
        row = {"images": n, "machine": machine, "threads": args.threads,
               **measure_train(data, budget, root / f"run-{n}", cache, args.threads)}
        import torch

        torch.set_num_threads(args.threads)
        row["loader_1"] = measure_loader(data, budget, cache, 1)
        row["loader_2"] = measure_loader(data, budget, cache, 2)
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    summarize([r for r in load_rows(jsonl) if r.get("machine") == machine], RESULTS / "data_pipeline.md")
    print((RESULTS / "data_pipeline.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
