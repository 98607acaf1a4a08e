"""Batches for training and evaluation, streamed by a `torch.utils.data.DataLoader`.

Each item is read, resized (long side to the budget's `image_size`, aspect ratio kept) and
augmented in the loader's worker processes; the collate step pads a batch bottom-right to a
canvas that is a multiple of the coarsest stride and makes its head's targets there (heads/), also
in the workers. With cached features (array_cache.py) an item is its rows of the memory-mapped arrays
instead, on the square canvas the features were computed on.

What a batch holds depends only on the seed, the step and the item: not on the number of
workers, nor on which worker read it. Flip and scale jitter draw from a generator seeded by
(seed, step, position in the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import DataError, Split


@dataclass(frozen=True)
class Frame:
    """How images meet the network: the long side resized to `size`, the batch padded to a
    multiple of `stride` (the coarsest level's), or of the power of two that holds a side
    smaller than it (a 64-pixel image is not padded to 128 for a 1x1 P7)."""

    size: int
    stride: int

    def _up(self, side: int) -> int:
        step = min(self.stride, 1 << max(0, side - 1).bit_length())
        return math.ceil(side / step) * step

    @property
    def square(self) -> int:
        """The side of the square canvas every image of this size fits (features, cost)."""
        return self._up(self.size)

    def pad(self, h: int, w: int) -> tuple[int, int]:
        return self._up(h), self._up(w)


def resize(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, h, w), bilinear with antialiasing."""
    if image.shape[-2:] == (h, w):
        return image
    out = F.interpolate(image[None].float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8)


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes of an image mirrored left-right (an image `width` pixels wide)."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


@dataclass
class Batch:
    index: torch.Tensor                    # (B,) positions in the split
    scales: torch.Tensor                   # (B,) float64: network frame = original * scale
    extents: torch.Tensor                  # (B, 2) w, h of each resized image inside the canvas
    canvas: tuple[int, int]
    targets: Optional[dict[str, torch.Tensor]]  # the head's, on the canvas (training batches)
    images: Optional[torch.Tensor] = None  # uint8 (B, 3, H, W)
    feats: Optional[list[torch.Tensor]] = None  # fp16 backbone features on the square canvas
    boxes: list[np.ndarray] = field(default_factory=list)  # in the network frame

    def pin_memory(self) -> "Batch":
        if self.targets is not None:
            self.targets = {k: v.pin_memory() for k, v in self.targets.items()}
        if self.images is not None:
            self.images = self.images.pin_memory()
        if self.feats is not None:
            self.feats = [f.pin_memory() for f in self.feats]
        return self


class Items(torch.utils.data.Dataset):
    """Item (i, draw) of a split: its image (resized, augmented) and/or its cached features, and
    its boxes in the network frame. `draw` seeds the augmentation; None: no augmentation."""

    def __init__(self, split: Split, frame: Frame, images: bool, features: Optional[Sequence[np.ndarray]] = None,
                 augment: Sequence[str] = (), jitter: tuple[float, float] = (1.0, 1.0)):
        self.split, self.frame, self.images = split, frame, images
        self.features = list(features) if features is not None else None
        self.augment, self.jitter = tuple(augment), jitter

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, Optional[tuple[int, ...]]]) -> dict:
        i, draw = key
        h, w = self.split.sizes[i]
        scale = self.frame.size / max(h, w)
        flip = False
        if draw is not None and self.augment:
            rng = np.random.default_rng(draw)
            if "jitter" in self.augment:
                scale *= float(rng.uniform(*self.jitter))
            if "flip" in self.augment:
                flip = bool(rng.random() < 0.5)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        boxes = self.split.boxes[i] * np.float32(scale)
        boxes = np.minimum(boxes, np.asarray([nw, nh, nw, nh], np.float32))
        item: dict = {"index": i, "scale": scale, "extent": (nw, nh), "labels": self.split.labels[i]}
        if self.images:
            try:
                image = resize(self.split.images.read(i), nh, nw)
            except DataError as err:  # raised again, as itself, by the process that trains
                return {"error": str(err)}
            if flip:
                image = image.flip(-1)
        if flip:
            boxes = flip_boxes(boxes, float(nw))
        item["boxes"] = boxes
        if self.images:
            item["image"] = image
        if self.features is not None:
            item["feats"] = [torch.from_numpy(np.array(f[i])) for f in self.features]
        return item


class Collate:
    """Pads a batch to its canvas and makes its head's targets there (runs in the loader's
    workers): `targets(canvas, boxes, labels)`, None for a batch without targets (evaluation, or
    one only read through the backbone)."""

    def __init__(self, frame: Frame, targets: Optional[Callable], square: bool):
        self.frame, self.targets, self.square = frame, targets, square

    def __call__(self, items: list[dict]) -> Batch | str:
        for item in items:
            if "error" in item:
                return item["error"]
        if self.square:
            canvas = (self.frame.square, self.frame.square)
        else:
            canvas = self.frame.pad(max(it["extent"][1] for it in items), max(it["extent"][0] for it in items))
        targets = None
        if self.targets is not None:
            targets = self.targets(canvas, [torch.from_numpy(it["boxes"]) for it in items],
                                   [torch.from_numpy(it["labels"]) for it in items])
        batch = Batch(index=torch.as_tensor([it["index"] for it in items]),
                      scales=torch.as_tensor([it["scale"] for it in items], dtype=torch.float64),
                      extents=torch.as_tensor([it["extent"] for it in items], dtype=torch.float32),
                      canvas=canvas, targets=targets, boxes=[it["boxes"] for it in items])
        if "image" in items[0]:
            images = torch.zeros(len(items), 3, *canvas, dtype=torch.uint8)
            for k, it in enumerate(items):
                image = it["image"]
                images[k, :, :image.shape[1], :image.shape[2]] = image
            batch.images = images
        if "feats" in items[0]:
            batch.feats = [torch.stack(level) for level in zip(*(it["feats"] for it in items))]
        return batch


class TrainOrder(torch.utils.data.Sampler):
    """`steps` batches: the split in a seeded random order, reshuffled when a batch would run past
    its end; each item with the augmentation draw (seed, step, position)."""

    def __init__(self, n: int, batch: int, steps: int, seed: int):
        self.n, self.batch, self.steps, self.seed = n, batch, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.n, generator=generator)
        cursor = 0
        for step in range(self.steps):
            if cursor + self.batch > self.n:
                order, cursor = torch.randperm(self.n, generator=generator), 0
            idx = order[cursor:cursor + min(self.batch, self.n)].tolist()
            cursor += len(idx)
            yield [(i, (self.seed, step, k)) for k, i in enumerate(idx)]


class InOrder(torch.utils.data.Sampler):
    """The first `n` items in order, `batch` at a time, without augmentation."""

    def __init__(self, n: int, batch: int):
        self.n, self.batch = n, batch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch)

    def __iter__(self) -> Iterator[list[tuple[int, None]]]:
        for start in range(0, self.n, self.batch):
            yield [(i, None) for i in range(start, min(start + self.batch, self.n))]


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # decoding in parallel workers; torch threads in each would oversubscribe


def batches(items: Items, order: torch.utils.data.Sampler, collate: Collate, workers: int,
            pin: bool) -> Iterator[Batch]:
    """The batches of `order`, read by `workers` processes (0: in this one). A DataError raised
    while reading an item is raised here, in the process that trains."""
    loader = torch.utils.data.DataLoader(items, batch_sampler=order, collate_fn=collate, num_workers=workers,
                                         pin_memory=pin, worker_init_fn=_one_thread if workers else None,
                                         prefetch_factor=4 if workers else None)
    for batch in loader:
        if isinstance(batch, str):
            raise DataError(batch)
        yield batch
