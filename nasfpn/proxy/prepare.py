"""The one-time steps of a proxy session (session.py): the pretrained shared backbone and its
frozen features. Both are cached on disk (weights-only files), keyed by dataset content, image
size, backbone seed and pretraining steps; the features also by the weights they came from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .budgets import Budget
from .cache import load_checked, save_checked
from .data import DetectionData, Split
from .loop import fit
from .model import Detector, new_backbone, normalize, plain_laterals
from .targets import level_ranges, locations, split_targets, strides_for


def _key(*parts) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def pretrain_backbone(data: DetectionData, budget: Budget, seed: int, device: str,
                      cache: Path, progress: bool) -> dict:
    """Train backbone + the neutral plain-laterals neck + head once; cache the backbone weights."""
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


def frozen_features(data: DetectionData, budget: Budget, state: dict, state_fingerprint: str, device: str,
                    cache: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """fp16 features of the train and val images under exactly these weights (a rebuilt
    backbone may differ in the last bits, so the key is their `fingerprint`)."""
    path = cache / f"features-{_key(data.key, budget.image_size, state_fingerprint, 'features')}.pt"
    saved = load_checked(path, "backbone features")
    if saved is not None:
        return saved["train"], saved["val"]
    train_feats = backbone_features(state, data.train, device)
    val_feats = backbone_features(state, data.val, device)
    save_checked(path, {"train": train_feats, "val": val_feats})
    return train_feats, val_feats


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of the backbone weights. Pretraining is deterministic on one machine at one
    thread count, not across machines (other kernels, other summation orders): runs compare
    exactly only when their fingerprints match."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]
