"""What every data source is turned into: an index of images (read one at a time, when a batch
needs them) and their boxes in original pixel coordinates. Nothing here holds decoded images
of a whole split: memory does not grow with the number of images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...errors import NasfpnError
from ..evaluate import coco_ground_truth


class DataError(NasfpnError):
    """Broken user data: one line naming the file and the item."""


class ImageSource:
    """Images by index: `read(i)` -> uint8 tensor (3, h, w) at the image's original size."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def subset(self, indices: Sequence[int]) -> "ImageSource":
        raise NotImplementedError


class ArrayImages(ImageSource):
    """Images of one size in a uint8 array (N, 3, H, W): in memory or memory-mapped from disk."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array[i]))  # a copy: the array may be a read-only map

    def subset(self, indices: Sequence[int]) -> "ArrayImages":
        if list(indices) == list(range(len(indices))):
            return ArrayImages(self.array[:len(indices)])
        return ArrayImages(self.array[np.asarray(indices, dtype=np.int64)])


class FileImages(ImageSource):
    """Image files decoded on demand (in the loader's worker processes). A file that does not
    decode raises a DataError naming it and the annotation item it belongs to."""

    def __init__(self, paths: Sequence[str], where: Sequence[str]):
        # one array of bytes, not a list of str objects: forked workers do not copy it page by page
        self.paths = np.asarray([str(p) for p in paths], dtype=object).astype(np.bytes_)
        self.where = np.asarray(list(where), dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        path = Path(self.paths[i].decode())
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise DataError(f"{path} ({self.where[i].decode()}): image does not decode: {exc}") from None
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)

    def subset(self, indices: Sequence[int]) -> "FileImages":
        out = FileImages.__new__(FileImages)
        idx = np.asarray(indices, dtype=np.int64)
        out.paths, out.where = self.paths[idx], self.where[idx]
        return out


@dataclass
class Split:
    images: ImageSource
    boxes: list[np.ndarray]              # per image, float32 (n, 4) xyxy in original pixels
    labels: list[np.ndarray]             # per image, int64 (n,) in 0..K-1
    image_ids: list[int]
    sizes: list[tuple[int, int]]         # (h, w) of each original image

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, n: int) -> "Split":
        """The first `n` images."""
        n = min(n, len(self))
        return self.pick(range(n))

    def pick(self, indices: Sequence[int]) -> "Split":
        indices = list(indices)
        return Split(self.images.subset(indices), [self.boxes[i] for i in indices],
                     [self.labels[i] for i in indices], [self.image_ids[i] for i in indices],
                     [self.sizes[i] for i in indices])

    def ground_truth(self, classes) -> dict:
        """COCO ground truth in original image coordinates."""
        return coco_ground_truth(self.image_ids, self.sizes, self.boxes, self.labels, classes)


@dataclass
class DetectionData:
    name: str                            # "synthetic" or "coco:DIR"
    key: str                             # identifies the content (images, boxes, subset), for caches
    classes: list[str]
    train: Split
    val: Split
    notes: list[str] = field(default_factory=list)   # counted warnings, e.g. skipped boxes
