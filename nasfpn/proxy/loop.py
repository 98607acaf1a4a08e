"""The training loop shared by backbone pretraining (prepare.py) and every trial (train.py):
AdamW with a linear warmup and cosine decay, losses summed and back-propagated once per step."""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Optional

import torch
from torch import nn
from tqdm import tqdm

from ..errors import NasfpnError
from .loader import Batch
from .model import Detector
from .precision import Precision, resolve


class TrainingDiverged(NasfpnError, RuntimeError):
    """The loss became NaN or infinite (the neck and schedule, not nasfpn: one line, exit 2)."""


class EarlyStop(Exception):
    """Raised by an evaluation callback to end training early (e.g. ASHA)."""


def _lr_lambda(steps: int, warmup: int, schedule: str) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def _parameter_groups(detector: Detector, lr: float, train_backbone: bool, backbone_lr_scale: float) -> list[dict]:
    """Neck, head and any feedback convs at `lr`; the backbone at lr * scale when it trains,
    less what it keeps frozen (its `frozen_parameters`); nothing of it when it does not."""
    backbone = detector.backbone
    feedback = set()
    if backbone is not None:
        if backbone.feedback_convs is not None:
            feedback = {id(p) for p in backbone.feedback_convs.parameters()}
        frozen = set() if train_backbone else {id(p) for p in backbone.parameters()} - feedback
        frozen |= {id(p) for p in backbone.frozen_parameters()}
        for p in backbone.parameters():
            p.requires_grad_(id(p) not in frozen)
        if not train_backbone:
            backbone.eval()  # fixed BN statistics
    mine = list(backbone.parameters()) if backbone is not None else []
    in_backbone = {id(p) for p in mine}
    fast = [p for p in detector.parameters() if p.requires_grad and id(p) not in in_backbone]
    fast += [p for p in mine if p.requires_grad and id(p) in feedback]
    slow = [p for p in mine if p.requires_grad and id(p) not in feedback]
    groups = [{"params": fast, "lr": lr}]
    if slow:
        groups.append({"params": slow, "lr": lr * backbone_lr_scale})
    return groups


def _fp32(out):
    if isinstance(out, dict):
        return {k: _fp32(v) for k, v in out.items()}
    return out.float() if out.is_floating_point() else out


def head_outputs(detector: Detector, batch: Batch, device: str, precision: Precision,
                 targets: Optional[dict] = None) -> dict:
    """The head's predictions for a batch, in fp32: its images or features copied to `device`
    (without blocking, from pinned memory on CUDA), the forward pass under `precision`'s autocast."""
    non_blocking = device.startswith("cuda")
    images = (detector.normalize(batch.images.to(device, non_blocking=non_blocking))
              if batch.images is not None else None)
    feats = ([f.to(device, non_blocking=non_blocking).float() for f in batch.feats]
             if batch.feats is not None else None)
    with precision.autocast():
        out = detector(images, feats, targets)
    return _fp32(out)


def fit(detector: Detector, batches: Iterable[Batch], steps: int, lr: float, warmup: int, device: str,
        train_backbone: bool, backbone_lr_scale: float, schedule: str = "cosine", desc: str = "training",
        progress: bool = True, on_eval: Optional[Callable[[int], None]] = None, eval_steps: tuple[int, ...] = (),
        precision: Optional[Precision] = None) -> dict:
    """Train for `steps` batches of `batches` (see loader.py), each with its head's targets.
    `on_eval(step)` is called at each of `eval_steps` and may raise EarlyStop. The forward pass
    runs under `precision`'s autocast, the losses in fp32 on its outputs. Returns timing and the
    last losses."""
    precision = precision or resolve("fp32", device)
    scaler = precision.scaler()
    detector.to(device).train()
    groups = _parameter_groups(detector, lr, train_backbone, backbone_lr_scale)
    detector.backbone_frozen = not train_backbone
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps, warmup, schedule))
    non_blocking = device.startswith("cuda")
    bar = tqdm(total=steps, desc=desc, disable=not progress, unit="step", dynamic_ncols=True, leave=False)
    start = time.perf_counter()
    seen = 0
    first_step_at = None
    last: dict[str, float] = {}
    try:
        for step, batch in zip(range(steps), batches):
            if first_step_at is None:
                first_step_at = time.time()
            targets = {k: v.to(device, non_blocking=non_blocking) for k, v in batch.targets.items()}
            losses = detector.loss(head_outputs(detector, batch, device, precision, targets), targets)
            total = losses["total"]
            if not torch.isfinite(total):
                raise TrainingDiverged(f"loss became {float(total)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 10.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(batch.index)
            last = {k: float(v.detach()) for k, v in losses.items()}
            if progress:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{last['total']:.3f}", img_s=f"{rate:.0f}", refresh=False)
                bar.update(1)
            if on_eval is not None and step + 1 in eval_steps:
                on_eval(step + 1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {"train_seconds": seconds, "images_per_second": seen / max(seconds, 1e-9),
            "images_seen": seen, "first_step_at": first_step_at, "final_losses": last}
