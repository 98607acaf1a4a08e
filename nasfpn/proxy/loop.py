"""The training loop shared by backbone pretraining (prepare.py) and every trial (train.py):
AdamW with a linear warmup and cosine decay, losses summed and back-propagated once per step."""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

from ..errors import NasfpnError
from .data import Split
from .losses import detection_loss
from .model import Detector, normalize
from .targets import Locations, SplitTargets


class TrainingDiverged(NasfpnError, RuntimeError):
    """The loss became NaN or infinite (the neck and schedule, not nasfpn: one line, exit 2)."""


class EarlyStop(Exception):
    """Raised by an evaluation callback to end training early (e.g. ASHA)."""


def _lr_lambda(steps: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def fit(detector: Detector, split: Split, feats: Optional[list[torch.Tensor]], targets: SplitTargets,
        locs: Locations, steps: int, batch: int, lr: float, warmup: int, seed: int, device: str,
        train_backbone: bool, backbone_lr_scale: float, desc: str = "training", progress: bool = True,
        on_eval: Optional[Callable[[int], None]] = None, eval_steps: tuple[int, ...] = ()) -> dict:
    """Train for `steps` steps; `on_eval(step)` is called at each of `eval_steps` and may raise
    EarlyStop. Returns timing and the last losses."""
    detector.to(device).train()
    if detector.backbone is not None and not train_backbone:
        detector.backbone.eval()  # frozen: fixed BN statistics
        for p in detector.backbone.parameters():
            p.requires_grad_(False)
        if detector.backbone.feedback_convs is not None:
            for p in detector.backbone.feedback_convs.parameters():
                p.requires_grad_(True)
    backbone_params = {id(p) for p in detector.backbone.parameters()} if detector.backbone is not None else set()
    fast = [p for p in detector.parameters() if p.requires_grad and id(p) not in backbone_params]
    slow = [p for p in detector.parameters() if p.requires_grad and id(p) in backbone_params]
    feedback_params = ({id(p) for p in detector.backbone.feedback_convs.parameters()}
                       if detector.backbone is not None and detector.backbone.feedback_convs is not None else set())
    groups = [{"params": fast + [p for p in slow if id(p) in feedback_params], "lr": lr}]
    plain_slow = [p for p in slow if id(p) not in feedback_params]
    if plain_slow:
        groups.append({"params": plain_slow, "lr": lr * backbone_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps, warmup))

    generator = torch.Generator().manual_seed(seed)
    n = len(split)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    points = locs.points.to(device)
    need_images = feats is None or detector.recursive
    bar = tqdm(total=steps, desc=desc, disable=not progress, unit="step", dynamic_ncols=True, leave=False)
    start = time.perf_counter()
    seen = 0
    last: dict[str, float] = {}
    try:
        for step in range(steps):
            if cursor + batch > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor:cursor + min(batch, n)]
            cursor += len(idx)
            images = normalize(split.images[idx].to(device)) if need_images else None
            batch_feats = [f[idx].to(device).float() for f in feats] if feats is not None else None
            cls, box, ctr = detector(images, batch_feats)
            b = cls.shape[0]
            losses = detection_loss(cls.flatten(0, 1), box.flatten(0, 1), ctr.flatten(),
                                    points.repeat(b, 1), targets.cls[idx].to(device).flatten(),
                                    targets.box[idx].to(device).flatten(0, 1))
            total = losses["total"]
            if not torch.isfinite(total):
                raise TrainingDiverged(f"loss became {float(total)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 10.0)
            optimizer.step()
            schedule.step()
            seen += len(idx)
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
            "images_seen": seen, "final_losses": last}
