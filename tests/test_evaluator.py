"""The COCO evaluator on hand-made cases, NMS, and target assignment."""

import math

import numpy as np
import pytest
import torch

from nasfpn.proxy.evaluate import coco_ap, coco_detections, coco_ground_truth
from nasfpn.proxy.postprocess import batched_nms, nms
from nasfpn.proxy.targets import assign, locations

BOXES = [np.array([[10, 10, 30, 30], [40, 40, 90, 90]], np.float32), np.array([[5, 5, 15, 20]], np.float32)]
LABELS = [np.array([0, 1]), np.array([0])]


def _gt():
    return coco_ground_truth([1, 2], [(100, 100), (100, 100)], BOXES, LABELS, ["a", "b"])


def _dets(boxes, scores=None, labels=LABELS):
    scores = scores or [np.linspace(0.9, 0.5, len(b)) for b in boxes]
    return coco_detections([1, 2], boxes, scores, labels)


def test_perfect_predictions_give_ap_1():
    ap = coco_ap(_gt(), _dets(BOXES))
    assert ap["AP"] == pytest.approx(1.0) and ap["AP50"] == pytest.approx(1.0) and ap["AP75"] == pytest.approx(1.0)
    assert math.isnan(ap["APl"])  # no large ground truth: nothing to measure, not 0


def test_no_predictions_give_0_not_an_error():
    assert coco_ap(_gt(), []) == {m: 0.0 for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def test_shifted_boxes_score_less():
    shifted = [b + np.array([3, 3, 3, 3], np.float32) for b in BOXES]
    far = [b + np.array([12, 12, 12, 12], np.float32) for b in BOXES]
    ap_shift, ap_far = coco_ap(_gt(), _dets(shifted)), coco_ap(_gt(), _dets(far))
    assert 0 < ap_shift["AP"] < 1.0
    assert ap_far["AP"] < ap_shift["AP"]
    assert ap_shift["AP75"] <= ap_shift["AP50"]


def test_wrong_class_scores_zero():
    wrong = [np.array([1, 0]), np.array([1])]
    assert coco_ap(_gt(), _dets(BOXES, labels=wrong))["AP"] == 0.0


def test_ground_truth_without_info_is_accepted():
    gt = _gt()
    del gt["info"]
    assert coco_ap(gt, _dets(BOXES))["AP"] == pytest.approx(1.0)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    labels = torch.tensor([0, 0, 0, 1])  # the last box is another class: kept
    assert sorted(batched_nms(boxes, scores, labels, 0.5).tolist()) == [0, 2, 3]


def _all_pairs_greedy_nms(boxes, scores, iou_threshold):
    """The textbook greedy NMS over the full IoU matrix: the oracle for the incremental one."""
    order = scores.argsort(descending=True)
    b = boxes[order]
    lt = torch.max(b[:, None, :2], b[None, :, :2])
    rb = torch.min(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area = (b[:, 2:] - b[:, :2]).prod(1)
    overlaps = inter / (area[:, None] + area[None] - inter).clamp(min=1e-9) > iou_threshold
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    keep = []
    for i in range(len(b)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i]
    return order[keep]


@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_nms_matches_the_all_pairs_greedy_reference(threshold):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(400, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(400, 2, generator=g) * 40], 1)
    boxes[200:220] = boxes[:20]  # exact duplicates
    scores = torch.rand(400, generator=g)
    expected = _all_pairs_greedy_nms(boxes, scores, threshold)
    assert 20 < len(expected) < 380
    assert torch.equal(nms(boxes, scores, threshold), expected)
    assert torch.equal(nms(boxes, scores, threshold, max_keep=10), expected[:10])


def test_targets_spread_over_levels_and_keep_tiny_objects():
    locs = locations(128, [8, 16, 32, 64, 128], [16, 32, 64, 128])
    boxes = torch.tensor([[60, 60, 64, 64], [10, 10, 40, 40], [0, 0, 120, 120.]])
    cls, target = assign(locs, boxes, torch.tensor([0, 1, 2]), num_classes=3)
    sizes = [h * w for h, w in locs.sizes]
    level_of = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
    assert (cls == 0).sum() == 1 and level_of[cls == 0].item() == 0      # 4 px object: one P3 location
    assert set(level_of[cls == 1].tolist()) <= {0, 1}                     # 30 px: P3/P4
    assert level_of[cls == 2].min() >= 2                                  # 120 px: coarse levels
    assert torch.equal(target[cls == 2][0], boxes[2])
