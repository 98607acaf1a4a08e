"""The one-time steps of a proxy session (session.py): the shared backbone's weights (the user's
file, or pretrained here once) and, for `backbone_mode: cached`, its frozen features.

Pretrained weights are a checked tensor file keyed by everything the pretraining reads (data,
image size, backbone, seed, steps, warmup, batch, lr, width, head depth, augmentation); the features are a
memory-mapped fp16 entry of the array cache keyed by the data, the canvas and the weights'
fingerprint. Each is built under a lock, once per machine (or cluster, on shared storage).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..dsl.budget import Budget
from .array_cache import ArrayWriter, cached_arrays, locked
from .backbones import new_backbone, normalize, read_weights
from .cache import load_checked, save_checked
from .data import DetectionData, Split
from .heads.fcos import FcosTargets
from .loader import Collate, Frame, InOrder, Items, TrainOrder, batches
from .loop import fit
from .model import Detector, plain_laterals

FEATURE_BATCH = 64


def _key(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _pretraining_key(data: DetectionData, budget: Budget, seed: int) -> str:
    """Everything the pretraining reads (augmentation only where there is some)."""
    augment = (budget.augment, budget.jitter) if budget.augments else ()
    return _key(data.key, budget.image_size, seed, budget.backbone_steps, budget.backbone_warmup, budget.batch,
                budget.lr, budget.width, budget.head_depth, *augment)


def shared_backbone(data: DetectionData, budget: Budget, seed: int, device: str, cache: Path, progress: bool,
                    workers: int = 0) -> dict:
    """The weights every trial's backbone starts from: the budget's file, else pretrained here."""
    if budget.backbone_weights:
        return read_weights(budget.backbone, budget.backbone_weights)
    path = cache / f"backbone-{budget.backbone}-{_pretraining_key(data, budget, seed)}.pt"
    cached = load_checked(path, "backbone weights")
    if cached is not None:
        return cached
    with locked(path.with_name(path.name + ".lock")):
        cached = load_checked(path, "backbone weights")  # pretrained by another process meanwhile
        if cached is not None:
            return cached
        state = pretrain(data, budget, seed, device, progress, workers)
        save_checked(path, state)
    return state


def pretrain(data: DetectionData, budget: Budget, seed: int, device: str, progress: bool, workers: int) -> dict:
    """Backbone + the neutral plain-laterals neck + the FCOS head trained on the train split
    (whatever head the trials score under: one backbone for every head)."""
    torch.manual_seed(seed)
    genotype = plain_laterals()
    backbone = new_backbone(budget.backbone, finetune=False)  # from scratch: batch norm and every stage train
    detector = Detector(genotype, len(data.classes), budget.width, budget.head_depth, backbone=backbone)
    frame = Frame(budget.image_size, max(2 ** lv for lv in genotype.levels))
    # augmented as the trials are (the presets, whose features are cached, augment nothing)
    items = Items(data.train, frame, images=True, augment=budget.augments, jitter=budget.jitter)
    collate = Collate(frame, FcosTargets(genotype.levels, len(data.classes)), square=False)
    stream = batches(items, TrainOrder(len(data.train), budget.batch, budget.backbone_steps, seed), collate,
                     workers, pin=device.startswith("cuda"))
    fit(detector, stream, steps=budget.backbone_steps, lr=budget.lr,
        warmup=budget.backbone_warmup, device=device, train_backbone=True, backbone_lr_scale=1.0,
        desc="pretraining the shared backbone", progress=progress)
    return {k: v.detach().cpu() for k, v in detector.backbone.state_dict().items()}


def feature_shapes(budget: Budget, levels, channels) -> list[tuple[int, int, int]]:
    """(C, H, W) of each cached backbone level (C3..C5) of one image on the square canvas."""
    side = Frame(budget.image_size, 2 ** max(levels)).square
    return [(c, -(-side // 2 ** lv), -(-side // 2 ** lv)) for c, lv in zip(channels, (3, 4, 5))]


def feature_bytes(budget: Budget, levels, channels, images: int) -> int:
    return 2 * images * sum(c * h * w for c, h, w in feature_shapes(budget, levels, channels))


@torch.no_grad()
def _write_features(out: ArrayWriter, name: str, split: Split, budget: Budget, levels, state: dict,
                    device: str, workers: int) -> None:
    backbone = new_backbone(budget.backbone)
    backbone.load_state_dict(state)
    backbone.eval().to(device)
    shapes = feature_shapes(budget, levels, backbone.out_channels)
    arrays = [out.create(f"{name}{k}", (len(split), *shape), np.float16) for k, shape in enumerate(shapes)]
    frame = Frame(budget.image_size, 2 ** max(levels))
    collate = Collate(frame, None, square=True)
    for batch in batches(Items(split, frame, images=True), InOrder(len(split), FEATURE_BATCH), collate, workers,
                         pin=device.startswith("cuda")):
        feats = backbone(normalize(batch.images.to(device), backbone))
        rows = batch.index.numpy()
        for array, f in zip(arrays, feats):
            array[rows[0]:rows[-1] + 1] = f.half().cpu().numpy()
    for array in arrays:
        array.flush()


def frozen_features(data: DetectionData, budget: Budget, levels, state: dict, state_fingerprint: str, device: str,
                    cache: Path, workers: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """fp16 features of the train and val images under exactly these weights (a rebuilt backbone
    may differ in the last bits, so the key is their `fingerprint`), memory-mapped from the cache."""
    side = Frame(budget.image_size, 2 ** max(levels)).square
    folder = cache / f"features-{budget.backbone}-{_key(data.key, side, state_fingerprint, 'features/2')}"

    def build(out: ArrayWriter) -> None:
        _write_features(out, "train", data.train, budget, levels, state, device, workers)
        _write_features(out, "val", data.val, budget, levels, state, device, workers)

    arrays = cached_arrays(folder, "backbone features", build)
    return ([arrays[f"train{k}"] for k in range(3)], [arrays[f"val{k}"] for k in range(3)])


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of the backbone weights. Pretraining is deterministic on one machine at one
    thread count, not across machines (other kernels, other summation orders): runs compare
    exactly only when their fingerprints match."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


__all__ = ["feature_bytes", "fingerprint", "frozen_features", "pretrain", "shared_backbone"]
