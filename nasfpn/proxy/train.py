"""Train and score one detector whose neck is a genotype.

`run_trial` is the unit of work of `nasfpn train`, `nasfpn baselines` and every search trial:
build the detector, train neck + head (on cached frozen backbone features, or end to end for the
`full` budget), evaluate COCO AP on the validation split, measure cost.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm

from .._version import versions
from ..dsl import Genotype
from .cost import count_flops, latency_ms
from .data import Split
from .evaluate import coco_ap, coco_detections
from .init import passthrough_init_
from .losses import detection_loss
from .model import Detector, count_model, load_backbone_weights, new_backbone, normalize
from .postprocess import decode
from .prepare import Prepared, SplitTargets
from .targets import Locations


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


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
    """The training loop shared by backbone pretraining and trials. Losses are summed and
    back-propagated once per step. Returns timing and the last losses."""
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


@torch.no_grad()
def predict(detector: Detector, split: Split, feats: Optional[list[torch.Tensor]], locs: Locations, device: str,
            limit: Optional[int] = None, batch: int = 32) -> tuple[list, list, list, list]:
    """Detections (image ids, boxes in original coordinates, scores, labels) on a split."""
    was_training = detector.training
    detector.eval()
    n = len(split) if limit is None else min(limit, len(split))
    points = locs.points.to(device)
    size = split.images.shape[-1]
    ids, boxes, scores, labels = [], [], [], []
    try:
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            need_images = feats is None or detector.recursive
            images = normalize(split.images[start:stop].to(device)) if need_images else None
            batch_feats = [f[start:stop].to(device).float() for f in feats] if feats is not None else None
            cls, box, ctr = detector(images, batch_feats)
            for k, (bx, sc, lb) in enumerate(decode(cls.float(), box.float(), ctr.float(), points, image_size=size)):
                i = start + k
                ids.append(split.image_ids[i])
                boxes.append(bx.cpu().numpy() / split.scales[i])
                scores.append(sc.cpu().numpy())
                labels.append(lb.cpu().numpy())
    finally:
        detector.train(was_training)
    return ids, boxes, scores, labels


def score(split: Split, classes: list[str], detections: tuple[list, list, list, list],
          limit: Optional[int] = None) -> dict[str, float]:
    """COCO AP of detections on (the first `limit` images of) a split."""
    n = len(detections[0]) if limit is None else min(limit, len(detections[0]))
    return coco_ap(split.subset(n).ground_truth(classes), coco_detections(*(d[:n] for d in detections)))


def evaluate(detector: Detector, split: Split, feats: Optional[list[torch.Tensor]], locs: Locations,
             classes: list[str], device: str, limit: Optional[int] = None) -> dict[str, float]:
    """COCO AP of the detector on (the first `limit` images of) a split, in original coordinates."""
    return score(split, classes, predict(detector, split, feats, locs, device, limit))


def measure_cost(detector: Detector, image_size: int, threads: int) -> dict[str, float]:
    """Params, FLOPs of neck and whole model at batch 1, and CPU latency of the whole model."""
    model = detector.to("cpu").eval()
    image = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        feats = model.backbone(image) if model.backbone is not None else None
        if feats is None:
            raise ValueError("measure_cost needs a detector with a backbone")
        model_flops = count_flops(lambda: model(image))
        neck_flops = count_flops(lambda: model.neck(feats))
        latency = latency_ms(lambda: model(image), warmup=3, runs=15, threads=threads)
    return {**count_model(model), "neck_flops": neck_flops, "model_flops": model_flops,
            "latency_ms": latency, "latency_threads": threads}


def build_detector(genotype: Genotype, prepared: Prepared, seed: int) -> Detector:
    """A detector with the shared pretrained backbone (frozen unless the budget trains it)."""
    budget = prepared.budget
    torch.manual_seed(seed)
    backbone = new_backbone(genotype.feedback is not None, budget.width)
    load_backbone_weights(backbone, prepared.backbone_state)
    detector = Detector(genotype, len(prepared.data.classes), budget.width, budget.head_depth, backbone=backbone)
    if budget.neck_init == "passthrough":
        passthrough_init_(detector.neck)
    return detector


def run_trial(genotype: Genotype, prepared: Prepared, seed: int = 0, device: str = "cpu",
              progress: bool = True, on_eval: Optional[Callable[[int, dict], None]] = None,
              eval_limit: Optional[int] = None, measure: bool = True) -> dict:
    """Train and evaluate one neck. `on_eval(step, metrics)` is called at the budget's
    intermediate evaluation points (on the first `eval_limit` val images) and may raise
    EarlyStop; the final evaluation uses the whole val split."""
    budget, data = prepared.budget, prepared.data
    torch.use_deterministic_algorithms(True, warn_only=True)
    detector = build_detector(genotype, prepared, seed)
    eval_steps = tuple(sorted({max(1, round(budget.steps * (k + 1) / budget.evals)) for k in range(budget.evals - 1)}))
    stopped_at = None

    def intermediate(step: int) -> None:
        metrics = evaluate(detector, data.val, prepared.val_feats, prepared.locs, data.classes, device,
                           limit=eval_limit)
        on_eval(step, metrics)

    try:
        timing = fit(detector, data.train, prepared.train_feats, prepared.train_targets, prepared.locs,
                     steps=budget.steps, batch=budget.batch, lr=budget.lr, warmup=budget.warmup, seed=seed,
                     device=device, train_backbone=budget.end_to_end, backbone_lr_scale=budget.backbone_lr_scale,
                     desc=f"{genotype.name} [{budget.name}]", progress=progress,
                     on_eval=intermediate if on_eval is not None else None, eval_steps=eval_steps)
    except EarlyStop as stop:
        stopped_at = str(stop)
        timing = None
    metrics: dict = {}
    if timing is not None:
        detections = predict(detector, data.val, prepared.val_feats, prepared.locs, device)
        metrics.update(score(data.val, data.classes, detections))
        if eval_limit is not None:  # the final score on the subset the intermediate ones used
            metrics["AP_rung"] = score(data.val, data.classes, detections, eval_limit)["AP"]
        metrics.update(timing)
    else:
        metrics["early_stopped"] = stopped_at
    if measure:
        metrics.update(measure_cost(detector, budget.image_size, threads=torch.get_num_threads()))
    metrics.update({"neck": genotype.name, "budget": budget.name, "budget_config": budget.as_dict(),
                    "seed": seed, "backbone_seed": prepared.backbone_seed,
                    "backbone_fingerprint": prepared.backbone_fingerprint, "device": device,
                    "threads": torch.get_num_threads(),
                    "data": data.name, "data_notes": data.notes, "versions": versions()})
    return metrics
