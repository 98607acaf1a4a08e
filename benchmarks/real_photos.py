"""A real-photo check: COCO-format data built from photographs that ship in a Debian package,
trained with a ResNet-18 at 384 px through the streamed pipeline.

The photos: the 26 stereo-calibration photographs of a chessboard (`left01.jpg`..`right14.jpg`,
640x480, a hand-held board at many poses and distances) in Debian's `opencv-doc` package
(`apt-get download opencv-doc`; the script fetches and unpacks it into --root when --photos is
not given). The boxes are exact, not drawn by hand: OpenCV's `findChessboardCorners` finds the
9x6 inner corners, and the box is their grid extended by one square on every side (the board's
checkered area). OpenCV (`pip install opencv-python-headless`) is needed by this script only.

Split by pose: the photo pairs 12-14 (6 images) are the val split, the other 20 the train split.
No ImageNet weights can be fetched here, so the ResNet-18 is pretrained from scratch on the 20
train photos (`backbone_steps`, with the plain-laterals neck) and then trained end to end with
the neck (frozen BN and stem, flip + scale jitter). Writes results/real_photos.md.

    python benchmarks/real_photos.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PATTERN = (9, 6)
VAL_POSES = ("12", "13", "14")
BUDGET = """# budget real-photos.yaml: ResNet-18 from scratch at 384 px on 20 photos
base: proxy
image_size: 384
train_images: 20
val_images: 6
batch: 8
steps: 200
warmup: 20
lr: 2.0e-3
backbone: resnet18
backbone_mode: train
backbone_steps: 200
backbone_warmup: 20
backbone_lr_scale: 1.0
augment: flip+jitter
jitter: [0.75, 1.25]
evals: 1
neck_init: default
"""


def photos_dir(root: Path) -> Path:
    """opencv-doc's examples/data, downloaded and unpacked into root when not there yet."""
    data = root / "opencv-doc" / "usr" / "share" / "doc" / "opencv-doc" / "examples" / "data"
    if data.is_dir():
        return data
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=root, check=True)
    (deb,) = root.glob("opencv-doc_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "opencv-doc")], check=True)
    return data


def board_box(corners: np.ndarray) -> list[float]:
    """The checkered area: the inner-corner grid extended by one square each way, as its box."""
    grid = corners.reshape(PATTERN[1], PATTERN[0], 2)
    right, down = grid[:, 1:] - grid[:, :-1], grid[1:] - grid[:-1]
    outer = [grid[0, 0] - right[0, 0] - down[0, 0], grid[0, -1] + right[0, -1] - down[0, -1],
             grid[-1, 0] - right[-1, 0] + down[-1, 0], grid[-1, -1] + right[-1, -1] + down[-1, -1]]
    pts = np.concatenate([np.stack(outer), corners.reshape(-1, 2)])
    return [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]


def build_coco(photos: Path, out: Path) -> dict[str, int]:
    import cv2

    counts = {}
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    splits: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], [])}
    for path in sorted(photos.glob("left[0-9]*.jpg")) + sorted(photos.glob("right[0-9]*.jpg")):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        found, corners = cv2.findChessboardCorners(gray, PATTERN)
        if not found:
            continue
        h, w = gray.shape
        x1, y1, x2, y2 = board_box(corners)
        x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
        split = "val" if path.stem[-2:] in VAL_POSES else "train"
        images, annotations = splits[split]
        (out / split).mkdir(exist_ok=True)
        shutil.copy(path, out / split / path.name)
        images.append({"id": len(images) + 1, "file_name": path.name, "width": w, "height": h})
        annotations.append({"id": len(annotations) + 1, "image_id": len(images), "category_id": 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    for split, (images, annotations) in splits.items():
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "chessboard"}]}))
        counts[split] = len(images)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/nasfpn-real-photos")
    parser.add_argument("--photos", help="a folder with left01.jpg..right14.jpg (default: from opencv-doc)")
    parser.add_argument("--neck", default="fpn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    root = Path(args.root)
    photos = Path(args.photos) if args.photos else photos_dir(root)
    coco = root / "chessboards"
    counts = build_coco(photos, coco)
    budget = root / "real-photos.yaml"
    budget.write_text(BUDGET)
    out = root / f"run-{args.neck}"
    start = time.time()
    cmd = [sys.executable, "-c", "import sys; from nasfpn.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", "--neck", args.neck, "--data", f"coco:{coco}", "--budget", str(budget), "--out", str(out),
           "--threads", str(args.threads), "--no-progress", "--cache", args.cache or str(root / "cache")]
    subprocess.run(cmd, check=True)
    wall = time.time() - start
    m = json.loads((out / "metrics.json").read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = "\n".join([
        "# Real photos: chessboards from Debian's opencv-doc, ResNet-18 at 384 px", "",
        f"`python benchmarks/real_photos.py` ({args.threads} torch threads): {counts['train']} train / "
        f"{counts['val']} val photographs, one class, boxes from OpenCV's chessboard-corner finder; "
        f"ResNet-18 pretrained from scratch on the train photos ({m['budget_config']['backbone_steps']} steps), "
        f"then `{args.neck}` + FCOS head trained end to end for {m['budget_config']['steps']} steps "
        "with flip + scale jitter.", "",
        "| neck | AP | AP50 | AP75 | train s | wall s (pretraining included) |", "|---|---|---|---|---|---|",
        f"| {args.neck} | {m['AP'] * 100:.1f} | {m['AP50'] * 100:.1f} | {m['AP75'] * 100:.1f} "
        f"| {m['train_seconds']:.0f} | {wall:.0f} |", ""])
    (RESULTS / "real_photos.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
