"""Data sources for the proxy trainer: the built-in `synthetic` dataset and `coco:DIR`."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .coco import load_coco_dir
from .dataset import DataError, DetectionData, Split
from .synthetic import CLASSES, render

__all__ = ["DataError", "DetectionData", "Split", "load_data", "synthetic_split"]


def synthetic_split(seed: int, split: str, n: int, image_size: int) -> Split:
    images, boxes, labels = [], [], []
    for i in range(n):
        img, b, lb = render(seed, split, i, image_size)
        images.append(torch.from_numpy((img * 255).round().astype(np.uint8)).permute(2, 0, 1))
        boxes.append(b)
        labels.append(lb)
    return Split(images=torch.stack(images), boxes=boxes, labels=labels,
                 image_ids=list(range(1, n + 1)), orig_sizes=[(image_size, image_size)] * n,
                 scales=np.ones(n))


@lru_cache(maxsize=4)
def load_data(spec: str, image_size: int = 128, train_images: int = 2048, val_images: int = 512,
              seed: int = 0) -> DetectionData:
    """`synthetic` (generated from `seed`, once per process) or `coco:DIR`."""
    if spec == "synthetic":
        train = synthetic_split(seed, "train", train_images, image_size)
        val = synthetic_split(seed, "val", val_images, image_size)
        return DetectionData(name="synthetic", key=f"synthetic-s{seed}-{image_size}-{train_images}-{val_images}",
                             classes=list(CLASSES), image_size=image_size, train=train, val=val)
    if spec.startswith("coco:"):
        return load_coco_dir(spec[len("coco:"):], image_size)
    raise DataError(f"unknown data source '{spec}': use 'synthetic' or 'coco:DIR'")
