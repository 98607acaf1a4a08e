"""Data sources for the proxy trainer: the built-in `synthetic` dataset and `coco:DIR`. Both end
as a DetectionData whose images are read one at a time by the loader (loader.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..array_cache import ArrayWriter, cached_arrays
from ..cache import cache_dir
from .coco import load_coco_dir
from .dataset import ArrayImages, DataError, DetectionData, FileImages, ImageSource, Split
from .synthetic import CLASSES, render

__all__ = ["ArrayImages", "DataError", "DetectionData", "FileImages", "ImageSource", "Split", "load_data",
           "synthetic_split"]


DISK_CACHE_MIN_IMAGES = 256  # smaller splits regenerate faster than they load


def _render_split(seed: int, split: str, n: int, image_size: int, out: ArrayWriter | None):
    images = (out.create("images", (n, 3, image_size, image_size), np.uint8) if out is not None
              else np.empty((n, 3, image_size, image_size), np.uint8))
    boxes, labels = [], []
    for i in range(n):
        img, b, lb = render(seed, split, i, image_size)
        images[i] = (img * 255).round().astype(np.uint8).transpose(2, 0, 1)
        boxes.append(b)
        labels.append(lb)
    if out is not None:
        out.save("boxes", np.concatenate(boxes).reshape(-1, 4).astype(np.float32))
        out.save("labels", np.concatenate(labels).astype(np.int64))
        out.save("counts", np.asarray([len(b) for b in boxes], np.int64))
    return images, boxes, labels


def synthetic_split(seed: int, split: str, n: int, image_size: int, cache: str | Path | None = None) -> Split:
    """The first `n` images of a synthetic split: generated once into the disk cache (memory-mapped
    from there), or in memory when they are too few to be worth caching."""
    if n < DISK_CACHE_MIN_IMAGES:
        images, boxes, labels = _render_split(seed, split, n, image_size, None)
    else:
        folder = cache_dir(cache) / f"synthetic-s{seed}-{split}-{image_size}px-{n}"
        arrays = cached_arrays(folder, "dataset", lambda out: _render_split(seed, split, n, image_size, out))
        images = arrays["images"]
        ends = np.cumsum(arrays["counts"])
        starts = ends - arrays["counts"]
        boxes = [np.array(arrays["boxes"][a:b]) for a, b in zip(starts, ends)]
        labels = [np.array(arrays["labels"][a:b]) for a, b in zip(starts, ends)]
    return Split(images=ArrayImages(images), boxes=boxes, labels=labels, image_ids=list(range(1, n + 1)),
                 sizes=[(image_size, image_size)] * n)


def load_data(spec: str, image_size: int = 128, train_images: int = 16384, val_images: int = 512,
              seed: int = 0, cache: str | Path | None = None) -> DetectionData:
    """`synthetic` (rendered at `image_size` from `seed`) or `coco:DIR` (a deterministic subset of
    `train_images` and `val_images` images). Each call loads anew: a dataset lives as long as the
    session that holds it (session.py)."""
    if spec == "synthetic":
        train = synthetic_split(seed, "train", train_images, image_size, cache)
        val = synthetic_split(seed, "val", val_images, image_size, cache)
        return DetectionData(name="synthetic", key=f"synthetic-s{seed}-{image_size}-{train_images}-{val_images}",
                             classes=list(CLASSES), train=train, val=val)
    if spec.startswith("coco:"):
        return load_coco_dir(spec[len("coco:"):], train_images, val_images, seed)
    raise DataError(f"unknown data source '{spec}': use 'synthetic' or 'coco:DIR'")
