"""What every trial on one dataset shares, built once: the FCOS targets, the pretrained backbone
and its frozen features. Backbone weights and features are cached on disk (weights-only files),
keyed by dataset content, image size, backbone seed and pretraining steps."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .budgets import Budget
from .cache import cache_dir, load_checked, save_checked
from .data import DetectionData, Split
from .model import Detector, new_backbone, normalize, plain_laterals
from .targets import Locations, assign, locations


@dataclass
class SplitTargets:
    cls: torch.Tensor        # (N, L) class per location, K = background
    box: torch.Tensor        # (N, L, 4) xyxy box each location regresses


class _Array:
    """A tensor on its way through pickle as a numpy array (see Prepared.__getstate__)."""

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


@dataclass
class Prepared:
    data: DetectionData
    budget: Budget
    locs: Locations
    train_targets: SplitTargets
    backbone_state: dict
    train_feats: Optional[list[torch.Tensor]]   # frozen backbone features (fp16), None end-to-end
    val_feats: Optional[list[torch.Tensor]]
    backbone_seed: int
    backbone_fingerprint: str                   # see fingerprint()

    # Ray's object store shares numpy arrays between worker processes without copying, but copies
    # tensors into every process: the ~2 GB of images and features travel as arrays.
    def __getstate__(self) -> dict:
        return _map_tensors(dict(self.__dict__), to_numpy=True)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(_map_tensors(state, to_numpy=False))


def split_targets(split: Split, locs: Locations, num_classes: int) -> SplitTargets:
    cls, box = [], []
    for b, lb in zip(split.boxes, split.labels):
        c, t = assign(locs, torch.from_numpy(b), torch.from_numpy(lb), num_classes)
        cls.append(c)
        box.append(t)
    return SplitTargets(torch.stack(cls), torch.stack(box))


def strides_for(levels) -> list[int]:
    return [2 ** lv for lv in levels]


def level_ranges(strides) -> list[float]:
    """max(l, t, r, b) boundaries between levels: 2 strides (FCOS uses 8 at 800 px; these images
    are far smaller, so objects spread over P3..P6 instead of crowding P3)."""
    return [2.0 * s for s in strides[:-1]]


def _key(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def pretrain_backbone(data: DetectionData, budget: Budget, seed: int, device: str,
                      cache: Path, progress: bool) -> dict:
    """Train backbone + the neutral plain-laterals neck + head once; cache the backbone weights."""
    from .train import fit  # a shared loop; imported here to keep the module graph one-way

    path = cache / f"backbone-{_key(data.key, budget.image_size, seed, budget.backbone_steps)}.pt"
    cached = load_checked(path, "backbone weights")
    if cached is not None:
        return cached
    torch.manual_seed(seed)
    genotype = plain_laterals()
    detector = Detector(genotype, len(data.classes), budget.width, budget.head_depth,
                        backbone=new_backbone(False, budget.width))
    locs = locations(budget.image_size, strides_for(genotype.levels), level_ranges(strides_for(genotype.levels)))
    targets = split_targets(data.train, locs, len(data.classes))
    fit(detector, data.train, None, targets, locs, steps=budget.backbone_steps, batch=budget.batch,
        lr=budget.lr, warmup=budget.warmup, seed=seed, device=device, train_backbone=True,
        backbone_lr_scale=1.0, desc="pretraining the shared backbone", progress=progress)
    state = {k: v.detach().cpu() for k, v in detector.backbone.state_dict().items()}
    save_checked(path, state)
    return state


@torch.no_grad()
def backbone_features(state: dict, split: Split, device: str, batch: int = 64) -> list[torch.Tensor]:
    backbone = new_backbone(False, 1)
    backbone.load_state_dict(state)
    backbone.eval().to(device)
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, len(split), batch):
        images = normalize(split.images[start:start + batch].to(device))
        chunks.append([f.half().cpu() for f in backbone(images)])
    return [torch.cat(level) for level in zip(*chunks)]


def prepare(data: DetectionData, budget: Budget, levels=(3, 4, 5, 6, 7), device: str = "cpu",
            backbone_seed: int = 0, cache: str | Path | None = None, progress: bool = True) -> Prepared:
    root = cache_dir(cache)
    strides = strides_for(levels)
    locs = locations(budget.image_size, strides, level_ranges(strides))
    targets = split_targets(data.train, locs, len(data.classes))
    state = pretrain_backbone(data, budget, backbone_seed, device, root, progress)
    backbone_id = fingerprint(state)
    train_feats = val_feats = None
    if not budget.end_to_end:  # features of exactly these weights (a rebuilt backbone may differ)
        key = _key(data.key, budget.image_size, backbone_id, "features")
        path = root / f"features-{key}.pt"
        saved = load_checked(path, "backbone features")
        if saved is not None:
            train_feats, val_feats = saved["train"], saved["val"]
        else:
            train_feats = backbone_features(state, data.train, device)
            val_feats = backbone_features(state, data.val, device)
            save_checked(path, {"train": train_feats, "val": val_feats})
    return Prepared(data, budget, locs, targets, state, train_feats, val_feats, backbone_seed, backbone_id)


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of the backbone weights. Pretraining is deterministic on one machine at one
    thread count, not across machines (other kernels, other summation orders): runs compare
    exactly only when their fingerprints match."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def cached_feature_bytes(prepared: Prepared) -> int:
    feats = (prepared.train_feats or []) + (prepared.val_feats or [])
    return sum(f.numel() * f.element_size() for f in feats)

