"""Train and score one detector whose neck is a genotype.

`run_trial` is the unit of work of `nasfpn train`, `nasfpn baselines` and every search trial:
build the detector, train neck + head (on cached frozen backbone features, or end to end for the
`full` budget), evaluate COCO AP on the validation split, measure cost.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .._version import versions
from ..dsl import Genotype
from .backbones import load_into, new_backbone
from .cost import count_flops, deterministic, latency_ms
from .data import Split
from .evaluate import coco_ap, coco_detections
from .init import passthrough_init_
from .loop import EarlyStop, fit, head_outputs
from .model import Detector, count_model
from .precision import Precision, resolve
from .session import ProxySession


@torch.no_grad()
def predict(detector: Detector, session: ProxySession, limit: Optional[int] = None,
            precision: Optional[Precision] = None) -> tuple[list, list, list, list]:
    """Detections (image ids, boxes in original coordinates, scores, labels) on the first `limit`
    val images: boxes are clamped to each resized image (not to the padded canvas) and mapped back
    by its scale (the padding is bottom-right, so nothing shifts). The forward pass runs under
    `precision`'s autocast; decoding in fp32 on the device, NMS and NumPy on boxes moved off it."""
    was_training = detector.training
    detector.eval()
    device, val = session.device, session.data.val
    precision = precision or resolve("fp32", device)
    ids, boxes, scores, labels = [], [], [], []
    try:
        for batch in session.eval_batches(limit, images=detector.recursive):
            found = detector.head.detect(head_outputs(detector, batch, device, precision), batch.extents.to(device))
            for k, (bx, sc, lb) in enumerate(found):
                i = int(batch.index[k])
                ids.append(val.image_ids[i])
                boxes.append(bx.cpu().numpy() / float(batch.scales[k]))
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


def evaluate(detector: Detector, session: ProxySession, limit: Optional[int] = None,
             precision: Optional[Precision] = None) -> dict[str, float]:
    """COCO AP of the detector on (the first `limit` images of) the val split, in original coordinates."""
    return score(session.data.val, session.data.classes, predict(detector, session, limit, precision))


def device_name(device: str) -> str:
    """What `device` is, in words, for the records: `cpu` or the GPU's name."""
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def measure_cost(detector: Detector, image_size: int, threads: int, device: str = "cpu") -> dict[str, float]:
    """Params, FLOPs of neck and whole model at batch 1 (fp32), and the latency of the whole
    model on `device` (at `threads` CPU threads there)."""
    model = detector.to(device).eval()
    model.round_features = False  # the model as deployed
    image = torch.zeros(1, 3, image_size, image_size, device=device)
    with torch.no_grad():
        feats = model.backbone(image) if model.backbone is not None else None
        if feats is None:
            raise ValueError("measure_cost needs a detector with a backbone")
        model_flops = count_flops(lambda: model(image))
        neck_flops = count_flops(lambda: model.neck(feats))
        latency = latency_ms(lambda: model(image), warmup=3, runs=15, threads=threads, device=device)
    return {**count_model(model), "neck_flops": neck_flops, "model_flops": model_flops,
            "latency_ms": latency, "latency_threads": threads, "latency_device": device_name(device)}


def build_detector(genotype: Genotype, session: ProxySession, seed: int) -> Detector:
    """A detector with the shared backbone weights (frozen unless the budget trains it)."""
    budget = session.budget
    torch.manual_seed(seed)
    backbone = new_backbone(budget.backbone, budget.width if genotype.feedback is not None else None)
    load_into(backbone, session.backbone_state)
    detector = Detector(genotype, len(session.data.classes), budget.width, budget.head_depth, backbone=backbone,
                        budget=budget)
    if budget.neck_init == "passthrough":
        passthrough_init_(detector.neck)
    # over the cache limit the frozen backbone runs live: its features rounded as the cache would store them
    detector.round_features = budget.backbone_mode == "cached"
    return detector


def run_trial(genotype: Genotype, session: ProxySession, seed: int = 0, progress: bool = True,
              on_eval: Optional[Callable[[int, dict], None]] = None, eval_limit: Optional[int] = None,
              measure: bool = True) -> dict:
    """Train and evaluate one neck on the session's device. `on_eval(step, metrics)` is called at
    the budget's intermediate evaluation points (on the first `eval_limit` val images) and may
    raise EarlyStop; the final evaluation uses the whole val split. Runs with torch's
    deterministic algorithms on (warn-only), and gives the caller's setting back after."""
    with deterministic():
        return _train_and_score(genotype, session, seed, progress, on_eval, eval_limit, measure)


def _train_and_score(genotype: Genotype, session: ProxySession, seed: int, progress: bool,
                     on_eval: Optional[Callable[[int, dict], None]], eval_limit: Optional[int],
                     measure: bool) -> dict:
    budget, data, device = session.budget, session.data, session.device
    precision = resolve(budget.precision, device)
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:
        torch.cuda.init()  # an indexed device (cuda:1) needs CUDA initialised before its memory stats
        torch.cuda.reset_peak_memory_stats(device)
    detector = build_detector(genotype, session, seed)
    eval_steps = tuple(sorted({max(1, round(budget.steps * (k + 1) / budget.evals)) for k in range(budget.evals - 1)}))
    stopped_at = None

    def intermediate(step: int) -> None:
        on_eval(step, evaluate(detector, session, limit=eval_limit, precision=precision))

    try:
        timing = fit(detector, session.train_batches(seed, images=detector.recursive), steps=budget.steps,
                     lr=budget.lr, warmup=budget.warmup, device=device,
                     train_backbone=budget.end_to_end, backbone_lr_scale=budget.backbone_lr_scale,
                     schedule=budget.schedule, desc=f"{genotype.name} [{budget.name}]", progress=progress,
                     on_eval=intermediate if on_eval is not None else None, eval_steps=eval_steps,
                     precision=precision)
    except EarlyStop as stop:
        stopped_at = str(stop)
        timing = None
    metrics: dict = {}
    if timing is not None:
        detections = predict(detector, session, precision=precision)
        metrics.update(score(data.val, data.classes, detections))
        if eval_limit is not None:  # the final score on the subset the intermediate ones used
            metrics["AP_rung"] = score(data.val, data.classes, detections, eval_limit)["AP"]
        metrics.update(timing)
    else:
        metrics["early_stopped"] = stopped_at
    if on_gpu:
        metrics["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    if measure:
        metrics.update(measure_cost(detector, session.frame.square, threads=torch.get_num_threads(), device=device))
    metrics.update({"neck": genotype.name, "budget": budget.name, "budget_config": budget.as_dict(),
                    "seed": seed, "backbone_seed": session.backbone_seed,
                    "backbone_fingerprint": session.backbone_fingerprint, "features": session.feature_source,
                    "device": device_name(device), "precision": precision.name,
                    "threads": torch.get_num_threads(),
                    "data": data.name, "data_notes": data.notes, "versions": versions()})
    return metrics
