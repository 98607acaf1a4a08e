"""The in-memory form every data source is turned into: fixed-size images and their boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import NasfpnError
from ..evaluate import coco_ground_truth


class DataError(NasfpnError):
    """Broken user data: one line naming the file and the item."""


@dataclass
class Split:
    images: torch.Tensor                 # uint8 (N, 3, S, S), letterboxed (top-left) to S x S
    boxes: list[np.ndarray]              # per image, float32 (n, 4) xyxy in the S x S frame
    labels: list[np.ndarray]             # per image, int64 (n,) in 0..K-1
    image_ids: list[int]
    orig_sizes: list[tuple[int, int]]    # (h, w) before resizing
    scales: np.ndarray                   # S x S frame = original * scale

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, n: int) -> "Split":
        n = min(n, len(self))
        return Split(self.images[:n], self.boxes[:n], self.labels[:n], self.image_ids[:n],
                     self.orig_sizes[:n], self.scales[:n])

    def ground_truth(self, classes) -> dict:
        """COCO ground truth in original image coordinates."""
        return coco_ground_truth(self.image_ids, self.orig_sizes,
                                 [b / s for b, s in zip(self.boxes, self.scales)], self.labels, classes)


@dataclass
class DetectionData:
    name: str                            # "synthetic" or "coco:DIR"
    key: str                             # identifies the content, for caches
    classes: list[str]
    image_size: int
    train: Split
    val: Split
    notes: list[str] = field(default_factory=list)   # counted warnings, e.g. skipped boxes
