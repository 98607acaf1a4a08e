"""One proxy session: a dataset, a budget and what every trial on them shares (FCOS targets, the
pretrained backbone, its frozen features), built once and handed to each `run_trial`.

The session holds the data; nothing else keeps a dataset alive, so a process that drops its
session frees it. `nasfpn train`, `nasfpn baselines`, a search's trials and the benchmarks all
score necks through one of these.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from .budgets import Budget
from .cache import cache_dir
from .data import DetectionData, load_data
from .prepare import fingerprint, frozen_features, pretrain_backbone
from .targets import Locations, SplitTargets, level_ranges, locations, split_targets, strides_for


@dataclass(frozen=True, eq=False)
class ProxySession:
    data: DetectionData
    budget: Budget
    device: str                                 # where trials train: cpu, cuda or cuda:N
    locs: Locations
    train_targets: SplitTargets
    backbone_state: dict
    train_feats: Optional[list[torch.Tensor]]   # frozen backbone features (fp16), None end-to-end
    val_feats: Optional[list[torch.Tensor]]
    backbone_seed: int
    backbone_fingerprint: str                   # see prepare.fingerprint

    @classmethod
    def open(cls, data: str, budget: Budget, levels: Sequence[int] = (3, 4, 5, 6, 7), backbone_seed: int = 0,
             data_seed: int = 0, cache: str | Path | None = None, device: str = "cpu",
             progress: bool = True) -> ProxySession:
        """Load `data` (`synthetic` or `coco:DIR`) at the budget's size and prepare it."""
        loaded = load_data(data, budget.image_size, budget.train_images, budget.val_images, data_seed, cache)
        return cls.from_data(loaded, budget, levels, backbone_seed, cache, device, progress)

    @classmethod
    def from_data(cls, data: DetectionData, budget: Budget, levels: Sequence[int] = (3, 4, 5, 6, 7),
                  backbone_seed: int = 0, cache: str | Path | None = None, device: str = "cpu",
                  progress: bool = True) -> ProxySession:
        """A session on data already loaded (several budgets on one dataset share its memory).
        The backbone is pretrained and its features computed on `device`, or read from `cache`."""
        root = cache_dir(cache)
        strides = strides_for(levels)
        locs = locations(budget.image_size, strides, level_ranges(strides))
        targets = split_targets(data.train, locs, len(data.classes))
        state = pretrain_backbone(data, budget, backbone_seed, device, root, progress)
        state_fingerprint = fingerprint(state)
        train_feats = val_feats = None
        if not budget.end_to_end:
            train_feats, val_feats = frozen_features(data, budget, state, state_fingerprint, device, root)
        return cls(data, budget, device, locs, targets, state, train_feats, val_feats, backbone_seed,
                   state_fingerprint)

    def on(self, device: str) -> ProxySession:
        """The same session, its trials trained on `device` (a search prepares on the driver's
        CPU, and each trial runs where its worker's accelerator is)."""
        return dataclasses.replace(self, device=device)

    # Ray's object store shares numpy arrays between worker processes without copying, but copies
    # tensors into every process: the ~2 GB of images and features travel as arrays.
    def __getstate__(self) -> dict:
        return _map_tensors(dict(self.__dict__), to_numpy=True)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(_map_tensors(state, to_numpy=False))


class _Array:
    """A tensor on its way through pickle as a numpy array (see ProxySession.__getstate__)."""

    def __init__(self, array):
        self.array = array


def _map_tensors(obj, to_numpy: bool):
    if to_numpy and isinstance(obj, torch.Tensor):
        return _Array(obj.detach().cpu().numpy())
    if not to_numpy and isinstance(obj, _Array):
        with warnings.catch_warnings():  # Ray hands out read-only shared memory; nothing writes it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(obj.array)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, to_numpy) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, to_numpy) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _map_tensors(getattr(obj, f.name), to_numpy)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj
