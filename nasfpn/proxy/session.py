"""One proxy session: a dataset, a budget and what every trial on them shares (the backbone's
weights, its frozen features on disk), opened once and handed to each `run_trial`.

A session holds an index of the data, not its images: batches are streamed (loader.py) and the
features memory-mapped (array_cache.py), so its memory does not grow with the dataset. A search
hands its trials a `SessionSpec` (a few hundred bytes: names, paths, the budget) and each worker
opens the session from the shared caches, once per process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from ..dsl.budget import Budget
from ..files import human_bytes
from .backbones import out_channels
from .cache import cache_dir
from .cost import deterministic_cublas
from .data import ArrayImages, DetectionData, Split, load_data
from .heads import target_maker
from .loader import Batch, Collate, Frame, InOrder, Items, TrainOrder, batches
from .prepare import feature_bytes, fingerprint, frozen_features, shared_backbone

DEFAULT_CACHE_LIMIT_GB = 20.0
EVAL_BATCH = 32


def default_workers() -> int:
    """Loader processes that decode images: up to 4, one core left to training."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class SessionSpec:
    """Everything needed to open a session again, on any node that sees the same paths."""

    data: str
    budget: Budget
    levels: tuple[int, ...] = (3, 4, 5, 6, 7)
    backbone_seed: int = 0
    data_seed: int = 0
    cache: Optional[str] = None
    cache_limit_gb: float = DEFAULT_CACHE_LIMIT_GB
    workers: Optional[int] = None   # loader processes for images that are decoded; None: default_workers()

    def open(self, device: str = "cpu", progress: bool = False) -> "ProxySession":
        data = load_data(self.data, self.budget.image_size, self.budget.train_images, self.budget.val_images,
                         self.data_seed, self.cache)
        return ProxySession.from_data(data, self.budget, self.levels, self.backbone_seed, self.cache, device,
                                      progress, self.cache_limit_gb, self.workers, spec=self)


@dataclass(frozen=True, eq=False)
class ProxySession:
    data: DetectionData
    budget: Budget
    device: str                                   # where trials train: cpu, cuda or cuda:N
    levels: tuple[int, ...]
    backbone_state: dict
    train_feats: Optional[list[np.ndarray]]       # memory-mapped fp16 features; None: the backbone runs live
    val_feats: Optional[list[np.ndarray]]
    backbone_seed: int
    backbone_fingerprint: str                     # see prepare.fingerprint
    workers: int
    feature_source: str                           # "disk cache", "live (over the cache limit)", "live", ...
    spec: Optional[SessionSpec] = None
    targets: Callable = field(default=None)  # type: ignore[assignment]  # the head's target maker

    def __post_init__(self) -> None:
        if self.targets is None:
            object.__setattr__(self, "targets", target_maker(self.budget, self.levels, len(self.data.classes)))

    @classmethod
    def open(cls, data: str, budget: Budget, levels: Sequence[int] = (3, 4, 5, 6, 7), backbone_seed: int = 0,
             data_seed: int = 0, cache: str | Path | None = None, device: str = "cpu", progress: bool = True,
             cache_limit_gb: float = DEFAULT_CACHE_LIMIT_GB, workers: Optional[int] = None) -> ProxySession:
        """Read `data` (`synthetic` or `coco:DIR`: its annotations are checked here) and prepare it."""
        spec = SessionSpec(data, budget, tuple(levels), backbone_seed, data_seed,
                           str(cache) if cache is not None else None, cache_limit_gb, workers)
        return spec.open(device, progress)

    @classmethod
    def from_data(cls, data: DetectionData, budget: Budget, levels: Sequence[int] = (3, 4, 5, 6, 7),
                  backbone_seed: int = 0, cache: str | Path | None = None, device: str = "cpu",
                  progress: bool = True, cache_limit_gb: float = DEFAULT_CACHE_LIMIT_GB,
                  workers: Optional[int] = None, spec: Optional[SessionSpec] = None) -> ProxySession:
        """A session on data already read (several budgets on one dataset). The backbone is
        pretrained and its features computed on `device`, or read from `cache`."""
        if device.startswith("cuda"):
            deterministic_cublas()
        root = cache_dir(cache)
        levels = tuple(levels)
        decoders = workers if workers is not None else default_workers()
        image_workers = 0 if isinstance(data.train.images, ArrayImages) else decoders
        state = shared_backbone(data, budget, backbone_seed, device, root, progress, image_workers)
        state_fingerprint = fingerprint(state)
        train_feats = val_feats = None
        source = "live" if budget.backbone_mode == "frozen" else "trained"
        if budget.backbone_mode == "cached":
            need = feature_bytes(budget, levels, out_channels(budget.backbone), len(data.train) + len(data.val))
            if need <= cache_limit_gb * 2 ** 30:
                train_feats, val_feats = frozen_features(data, budget, levels, state, state_fingerprint, device,
                                                         root, image_workers)
                source = "disk cache"
            else:
                source = "live (over the cache limit)"
                print(f"note: the frozen features of {len(data.train) + len(data.val)} images would take "
                      f"{human_bytes(need)}, over the cache limit of {cache_limit_gb:g} GB (--cache-limit): "
                      "the frozen backbone runs live in every step instead", file=sys.stderr)
        return cls(data, budget, device, levels, state, train_feats, val_feats, backbone_seed, state_fingerprint,
                   image_workers, source, spec)

    @property
    def precision(self) -> str:
        """The precision this session's trials train in, the budget's resolved on its device."""
        from .precision import resolve

        return resolve(self.budget.precision, self.device).name

    def on(self, device: str) -> ProxySession:
        """The same session, its trials trained on `device`."""
        return dataclasses.replace(self, device=device)

    @property
    def frame(self) -> Frame:
        return Frame(self.budget.image_size, 2 ** max(self.levels))

    @property
    def square(self) -> bool:
        """Batches on the square canvas the cached features are computed on: also when the frozen
        backbone runs live over the cache limit, so that it sees what the cache would hold."""
        return self.budget.backbone_mode == "cached"

    def _items(self, split: Split, feats: Optional[list[np.ndarray]], images: bool, augment: bool) -> Items:
        return Items(split, self.frame, images=images or feats is None, features=feats,
                     augment=self.budget.augments if augment else (), jitter=self.budget.jitter)

    def _workers(self, items: Items) -> int:
        return self.workers if items.images else 0

    def train_batches(self, seed: int, images: bool) -> Iterator[Batch]:
        """The budget's `steps` training batches in the order `seed` gives (features when cached;
        images too when `images`)."""
        items = self._items(self.data.train, self.train_feats, images, augment=True)
        order = TrainOrder(len(self.data.train), self.budget.batch, self.budget.steps, seed)
        collate = Collate(self.frame, self.targets, self.square)
        return batches(items, order, collate, self._workers(items), pin=self.device.startswith("cuda"))

    def eval_batches(self, limit: Optional[int], images: bool) -> Iterator[Batch]:
        """The first `limit` val images (all when None), in order, without augmentation."""
        n = len(self.data.val) if limit is None else min(limit, len(self.data.val))
        items = self._items(self.data.val, self.val_feats, images, augment=False)
        collate = Collate(self.frame, None, self.square)
        return batches(items, InOrder(n, EVAL_BATCH), collate, self._workers(items),
                       pin=self.device.startswith("cuda"))


_OPENED: list[tuple[SessionSpec, ProxySession]] = []


def shared_session(spec: SessionSpec, device: str) -> ProxySession:
    """The session of `spec` in this process, opened on first use (a search's trial workers run
    many trials each; one session is kept, so memory stays that of one)."""
    if not _OPENED or _OPENED[0][0] != spec:
        _OPENED.clear()
        _OPENED.append((spec, spec.open(device)))
    return _OPENED[0][1].on(device)
