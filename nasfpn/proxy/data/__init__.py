"""Data sources for the proxy trainer: the built-in `synthetic` dataset and `coco:DIR`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...files import atomic_output
from ..cache import cache_dir, read_cache
from .coco import load_coco_dir
from .dataset import DataError, DetectionData, Split
from .synthetic import CLASSES, render

__all__ = ["DataError", "DetectionData", "Split", "load_data", "synthetic_split"]


DISK_CACHE_MIN_IMAGES = 256  # smaller splits regenerate faster than they load


def synthetic_split(seed: int, split: str, n: int, image_size: int, cache: str | Path | None = None) -> Split:
    """Generate (or load from the disk cache) the first `n` images of a synthetic split."""
    path = None
    if n >= DISK_CACHE_MIN_IMAGES:
        path = cache_dir(cache) / f"synthetic-s{seed}-{split}-{image_size}px-{n}.npz"
        cached = _load_split(path, n, image_size)
        if cached is not None:
            return cached
    images, boxes, labels = [], [], []
    for i in range(n):
        img, b, lb = render(seed, split, i, image_size)
        images.append(torch.from_numpy((img * 255).round().astype(np.uint8)).permute(2, 0, 1))
        boxes.append(b)
        labels.append(lb)
    out = _split(torch.stack(images), boxes, labels, image_size)
    if path is not None:
        with atomic_output(path) as tmp, open(tmp, "wb") as f:  # zip members carry CRC-32s
            np.savez(f, images=out.images.numpy(), boxes=np.concatenate(boxes).reshape(-1, 4),
                     labels=np.concatenate(labels), counts=np.asarray([len(b) for b in boxes]))
    return out


def _load_split(path: Path, n: int, image_size: int) -> Split | None:
    """The cached split, or None when there is none or it is damaged (then it is removed)."""
    def load(p: Path) -> dict:
        with np.load(p, allow_pickle=False) as saved:  # each saved[key] reads the array anew
            return {k: saved[k] for k in ("images", "boxes", "labels", "counts")}

    def problem(a: dict) -> str | None:
        if (a["images"].shape != (n, 3, image_size, image_size) or a["images"].dtype != np.uint8
                or a["counts"].shape != (n,) or int(a["counts"].sum()) != len(a["boxes"])
                or len(a["boxes"]) != len(a["labels"])):
            return "has the wrong shape for its name"
        return None

    arrays = read_cache(path, "dataset", load, problem)
    if arrays is None:
        return None
    ends = np.cumsum(arrays["counts"])
    starts = ends - arrays["counts"]
    return _split(torch.from_numpy(arrays["images"]), [arrays["boxes"][a:b].copy() for a, b in zip(starts, ends)],
                  [arrays["labels"][a:b].copy() for a, b in zip(starts, ends)], image_size)


def _split(images: torch.Tensor, boxes: list, labels: list, image_size: int) -> Split:
    n = int(images.shape[0])
    return Split(images=images, boxes=boxes, labels=labels, image_ids=list(range(1, n + 1)),
                 orig_sizes=[(image_size, image_size)] * n, scales=np.ones(n))


def load_data(spec: str, image_size: int = 128, train_images: int = 16384, val_images: int = 512,
              seed: int = 0, cache: str | Path | None = None) -> DetectionData:
    """`synthetic` (generated from `seed` once, then loaded from the disk cache) or `coco:DIR`.
    Each call loads anew: a dataset lives as long as the session that holds it (session.py)."""
    if spec == "synthetic":
        train = synthetic_split(seed, "train", train_images, image_size, cache)
        val = synthetic_split(seed, "val", val_images, image_size, cache)
        return DetectionData(name="synthetic", key=f"synthetic-s{seed}-{image_size}-{train_images}-{val_images}",
                             classes=list(CLASSES), image_size=image_size, train=train, val=val)
    if spec.startswith("coco:"):
        return load_coco_dir(spec[len("coco:"):], image_size)
    raise DataError(f"unknown data source '{spec}': use 'synthetic' or 'coco:DIR'")
