"""COCO-style AP from a maintained evaluator (faster-coco-eval; pycocotools as a fallback), run in
memory. Guards the evaluators' known pitfalls: a result list with no detections (loadRes fails
on it) and a ground truth without `info` (pycocotools' loadRes copies it)."""

from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _backend():
    try:
        from faster_coco_eval import COCO, COCOeval_faster

        return "faster-coco-eval", COCO, COCOeval_faster
    except ImportError:  # pragma: no cover - exercised only where faster-coco-eval is missing
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return "pycocotools", COCO, COCOeval


def coco_ground_truth(image_ids: Sequence[int], sizes: Sequence[tuple[int, int]],
                      boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                      class_names: Sequence[str]) -> dict:
    """A COCO dataset dict; boxes xyxy in pixels, labels 0-based (category ids are label + 1)."""
    images = [{"id": int(i), "height": int(h), "width": int(w)} for i, (h, w) in zip(image_ids, sizes)]
    annotations = []
    for img_id, bxs, lbs in zip(image_ids, boxes, labels):
        for box, label in zip(np.asarray(bxs).reshape(-1, 4), np.asarray(lbs).reshape(-1)):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": int(img_id),
                                "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    return {"info": {"description": "nasfpn evaluation"}, "images": images,
            "annotations": annotations, "categories": categories}


def coco_detections(image_ids: Sequence[int], boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                    labels: Sequence[np.ndarray]) -> list[dict]:
    out = []
    for img_id, bxs, scs, lbs in zip(image_ids, boxes, scores, labels):
        for box, score, label in zip(np.asarray(bxs).reshape(-1, 4), np.asarray(scs).reshape(-1),
                                     np.asarray(lbs).reshape(-1)):
            x1, y1, x2, y2 = (float(v) for v in box)
            out.append({"image_id": int(img_id), "category_id": int(label) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return out


def coco_ap(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl in [0, 1]; all 0 when there are no detections. Metrics
    with no ground truth in their area range (COCO reports -1) are returned as NaN."""
    if not detections:
        return {m: 0.0 for m in METRICS}
    name, COCO, COCOeval = _backend()
    gt = dict(ground_truth)
    gt.setdefault("info", {"description": "nasfpn evaluation"})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(s) for s in evaluator.stats[:6]]
    return {m: (float("nan") if s < 0 else s) for m, s in zip(METRICS, stats)}
