"""The heads a neck is scored under (nasfpn/proxy/heads/): their parts against references written
here from the definitions, perfect predictions scoring AP 1.0 through the evaluator, each head
training end to end on the smoke budget, and consistent supervision adding exactly its terms to
the one backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nasfpn
from nasfpn.dsl.budget import budget_from_dict, read_budget
from nasfpn.proxy.evaluate import coco_ap, coco_detections, coco_ground_truth
from nasfpn.proxy.heads import build_head, target_maker
from nasfpn.proxy.heads.anchors import anchor_shapes, box_iou, decode, encode, grid_anchors, match
from nasfpn.proxy.heads.cornernet import corner_pool, corner_radius
from nasfpn.proxy.heads.roi import map_levels, roi_align
from nasfpn.proxy.postprocess import batched_nms, soft_nms, suppress

LEVELS = (3, 4, 5, 6, 7)
CANVAS = (128, 128)
CLASSES = ["a", "b", "c"]
# two images of well-separated boxes (no two corners of a class share a stride-8 cell)
BOXES = [torch.tensor([[8.0, 8.0, 40.0, 40.0], [50.0, 20.0, 110.0, 70.0], [20.0, 60.0, 60.0, 120.0]]),
         torch.tensor([[4.0, 4.0, 30.0, 50.0], [70.0, 70.0, 121.0, 124.0]])]
LABELS = [torch.tensor([0, 1, 2]), torch.tensor([1, 0])]
STRONG = 20.0


# --- RoIAlign and the level mapping ------------------------------------------------------------

def _bilinear(plane: np.ndarray, y: float, x: float) -> float:
    """One sample, by torchvision's rules written out: 0 beyond one pixel outside, clamped nearer."""
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * plane[y0, x0] + (1 - ly) * lx * plane[y0, x1]
            + ly * (1 - lx) * plane[y1, x0] + ly * lx * plane[y1, x1])


def _roi_align_reference(feat: np.ndarray, roi, scale: float, out: int, s: int) -> np.ndarray:
    b, x1, y1, x2, y2 = roi
    x1, y1, x2, y2 = x1 * scale - 0.5, y1 * scale - 0.5, x2 * scale - 0.5, y2 * scale - 0.5
    bh, bw = (y2 - y1) / out, (x2 - x1) / out
    result = np.zeros((feat.shape[1], out, out))
    for c in range(feat.shape[1]):
        for ph in range(out):
            for pw in range(out):
                samples = [_bilinear(feat[int(b), c], y1 + ph * bh + (iy + 0.5) * bh / s,
                                     x1 + pw * bw + (ix + 0.5) * bw / s) for iy in range(s) for ix in range(s)]
                result[c, ph, pw] = sum(samples) / (s * s)
    return result


def test_roi_align_matches_the_definition_inside_at_the_borders_and_below_a_pixel():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    rois = torch.tensor([[0, 3.0, 5.0, 40.0, 30.0],     # inside
                         [1, -6.0, -4.0, 20.0, 14.0],   # over the top-left border
                         [0, 70.0, 50.0, 95.0, 80.0],   # over the bottom-right border (map is 44 x 36 px)
                         [1, 12.3, 9.7, 13.1, 10.2],    # under one pixel of the map
                         [0, 30.0, 30.0, 30.0, 30.0]],  # a point
                        dtype=torch.float64)
    for scale, out, s in ((0.25, 7, 2), (0.25, 3, 3), (0.5, 2, 1)):
        got = roi_align(feat, rois, scale, out, s)
        for r in range(len(rois)):
            want = _roi_align_reference(feat.numpy(), rois[r].tolist(), scale, out, s)
            np.testing.assert_allclose(got[r].numpy(), want, rtol=1e-10, atol=1e-12)
    shuffled = rois[[3, 0, 4, 1, 2]]  # RoIs in any image order come back in their order
    torch.testing.assert_close(roi_align(feat, shuffled, 0.25), roi_align(feat, rois, 0.25)[[3, 0, 4, 1, 2]])


def test_roi_align_back_propagates_to_the_features():
    feat = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 2.0, 2.0, 17.0, 13.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 0.25, 3, 2), (feat,))


def test_fpn_maps_a_224_box_to_k0_and_halves_a_level_down_clamped_to_the_pyramid():
    def box(side):
        return [10.0, 10.0, 10.0 + side, 10.0 + side]

    boxes = torch.tensor([box(224), box(112), box(448), box(223), box(20), box(5000)])
    levels = (LEVELS[k] for k in map_levels(boxes, LEVELS).tolist())
    assert list(levels) == [4, 3, 5, 3, 3, 7]
    assert [LEVELS[k] for k in map_levels(torch.tensor([box(36), box(72)]), LEVELS, canonical=36).tolist()] == [4, 5]


# --- NMS ------------------------------------------------------------------------------------------

def _random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 80
    wh = torch.rand(n, 2, generator=g) * 40 + 4
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def _textbook_soft_nms(boxes, scores, sigma, min_score):
    """Bodla et al.'s Algorithm 1 with the Gaussian penalty, over every box."""
    b, s = boxes.double().numpy().tolist(), scores.double().numpy().tolist()
    remaining = list(range(len(b)))
    kept = []
    while remaining:
        m = max(remaining, key=lambda i: (s[i], -i))
        remaining.remove(m)
        kept.append((m, s[m]))
        for i in remaining:
            iou = float(box_iou(torch.tensor([b[m]], dtype=torch.float64), torch.tensor([b[i]], dtype=torch.float64)))
            s[i] *= math.exp(-iou ** 2 / sigma)
        remaining = [i for i in remaining if s[i] >= min_score]
    return [k for k in kept if k[1] >= min_score]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_nms_matches_the_textbook_algorithm_on_random_boxes(seed):
    boxes, scores = _random_boxes(60, seed)
    want = _textbook_soft_nms(boxes, scores, sigma=0.5, min_score=1e-3)
    index, decayed = soft_nms(boxes, scores, sigma=0.5)
    assert index.tolist() == [i for i, _ in want]
    np.testing.assert_allclose(decayed.numpy(), [v for _, v in want], rtol=1e-6)
    top, _ = soft_nms(boxes, scores, sigma=0.5, max_keep=10)  # stopping early keeps the same first ten
    assert top.tolist() == index[:10].tolist()
    assert len(want) > len(batched_nms(boxes, scores, torch.zeros(60, dtype=torch.long), 0.5))  # it decays, not drops


def test_hard_suppression_is_the_greedy_nms_unchanged_and_classes_never_suppress_each_other():
    boxes, scores = _random_boxes(80, 3)
    labels = torch.arange(80) % 3
    kept, kept_scores = suppress(boxes, scores, labels, "hard", 0.5, 0.5, 100)
    assert kept.tolist() == batched_nms(boxes, scores, labels, 0.5, 100).tolist()
    assert torch.equal(kept_scores, scores[kept])
    same = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    for kind in ("hard", "soft"):
        kept, kept_scores = suppress(same, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), kind, 0.5, 0.5, 100)
        assert kept.tolist() == [0, 1] and kept_scores.tolist() == pytest.approx([0.9, 0.8])


# --- anchors --------------------------------------------------------------------------------------

def test_anchors_have_the_counts_ratios_and_octave_scales_asked_for():
    assert anchor_shapes(1, 4.0) == [(4.0, 4.0)]
    nine = anchor_shapes(9, 4.0)
    assert len(nine) == 9 and len(anchor_shapes(6, 4.0)) == 6 and len(anchor_shapes(3, 4.0)) == 3
    areas = sorted({round(w * h, 6) for w, h in nine})
    assert areas == pytest.approx([16.0, 16.0 * 2 ** (2 / 3), 16.0 * 2 ** (4 / 3)])  # 3 octaves of side 4
    assert sorted({round(h / w, 6) for w, h in nine}) == [0.5, 1.0, 2.0]
    anchors = grid_anchors([(2, 3)], [8], 3, 4.0)
    assert anchors.shape == (18, 4) and anchors[:3, :2].add(anchors[:3, 2:]).div(2).tolist() == [[4.0, 4.0]] * 3


def test_matching_and_the_box_coder():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 9.0, 10.0], [50.0, 50.0, 60.0, 60.0],
                            [20.0, 20.0, 30.0, 30.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [22.0, 21.0, 26.0, 25.0]])
    # anchor 1 overlaps box 0 at 0.9; anchor 3 is box 1's best (0.16, below 0.4) and still matched
    assert match(anchors, boxes, 0.5, 0.4).tolist() == [0, 0, -1, 1]
    assert match(anchors, boxes, 0.95, 0.85).tolist() == [0, -2, -1, 1]
    # a box's best anchor stays with the box it fits best (here box 0 at IoU 0.9, not box 1 at 0.28)
    assert match(torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
                 torch.tensor([[0.0, 0.0, 10.0, 9.0], [5.0, 0.0, 40.0, 10.0]]), 0.5, 0.4).tolist() == [0, -1]
    weights = (10.0, 10.0, 5.0, 5.0)
    deltas = encode(anchors, boxes[[0, 0, 1, 1]], weights)
    torch.testing.assert_close(decode(anchors, deltas, weights), boxes[[0, 0, 1, 1]])


# --- corner pooling and decoding --------------------------------------------------------------

def test_corner_pooling_matches_a_loop():
    x = torch.randn(2, 3, 5, 7)
    down, right = corner_pool(x, 2, True), corner_pool(x, 3, True)
    up, left = corner_pool(x, 2, False), corner_pool(x, 3, False)
    for i in range(5):
        for j in range(7):
            torch.testing.assert_close(down[..., i, j], x[..., i:, j].max(-1).values)
            torch.testing.assert_close(right[..., i, j], x[..., i, j:].max(-1).values)
            torch.testing.assert_close(up[..., i, j], x[..., :i + 1, j].max(-1).values)
            torch.testing.assert_close(left[..., i, j], x[..., i, :j + 1].max(-1).values)


def test_the_corner_radius_keeps_the_overlap_it_promises():
    for w, h in ((10.0, 10.0), (40.0, 12.0), (3.0, 60.0)):
        r = corner_radius(w, h, 0.7)
        box = torch.tensor([[0.0, 0.0, w, h]])
        moved = torch.tensor([[r, r, w - r, h - r], [-r, -r, w + r, h + r], [r, r, w + r, h + r]])
        assert box_iou(moved, box).min() >= 0.7 - 1e-6
        assert box_iou(torch.tensor([[1.2 * r, 1.2 * r, w + 1.2 * r, h + 1.2 * r]]), box).item() < 0.7


# --- perfect predictions score AP 1 --------------------------------------------------------------

def _perfect(head: str, budget) -> dict:
    """What the head would predict if it were right everywhere, from its own targets."""
    targets = target_maker(budget, LEVELS, len(CLASSES))(CANVAS, BOXES, LABELS)
    model = build_head(budget, 8, len(CLASSES), LEVELS, 1).eval()
    feats = [torch.zeros(2, 8, math.ceil(128 / 2 ** lv), math.ceil(128 / 2 ** lv)) for lv in LEVELS]
    with torch.no_grad():
        out = model(feats)
    k = len(CLASSES)
    if head == "fcos":
        pos = targets["cls"] < k
        cls = torch.full_like(out["cls"], -STRONG)
        cls[pos, targets["cls"][pos]] = STRONG
        pts = out["points"][None].expand(2, -1, -1)
        box = torch.cat([pts - targets["box"][..., :2], targets["box"][..., 2:] - pts], -1).clamp(min=0)
        out.update(cls=cls, box=box, ctr=torch.full_like(out["ctr"], STRONG))
    elif head == "retina":
        pos = (targets["cls"] >= 0) & (targets["cls"] < k)
        cls = torch.full_like(out["cls"], -STRONG)
        cls[pos, targets["cls"][pos]] = STRONG
        box = torch.stack([encode(out["anchors"], targets["box"][i], (1.0, 1.0, 1.0, 1.0)) for i in range(2)])
        out.update(cls=cls, box=torch.where(pos[..., None], box, torch.zeros_like(box)))
    elif head == "faster_rcnn":
        background = torch.tensor([[0.0, 0.0, 20.0, 100.0], [60.0, 0.0, 128.0, 10.0]])
        rois = torch.cat([BOXES[0], background, BOXES[1], background])
        images = torch.tensor([0] * 5 + [1] * 4)
        labels = torch.cat([LABELS[0], torch.tensor([k, k]), LABELS[1], torch.tensor([k, k])])
        cls = torch.full((len(rois), k + 1), -STRONG)
        cls[torch.arange(len(rois)), labels] = STRONG
        out.update(rois=rois, roi_image=images, roi_cls=cls, roi_box=torch.zeros(len(rois), k, 4))
    else:
        for c in ("tl", "br"):
            heat = torch.full_like(out[f"{c}_heat"], -STRONG)
            heat[targets[f"{c}_heat"] == 1] = STRONG
            embed = torch.zeros_like(out[f"{c}_embed"]).flatten(1)
            offset = torch.zeros_like(out[f"{c}_offset"]).flatten(2)
            for i in range(2):
                n = len(BOXES[i])
                embed[i, targets[f"{c}_cell"][i, :n]] = 2.0 * torch.arange(n, dtype=torch.float32)
                offset[i][:, targets[f"{c}_cell"][i, :n]] = targets[f"{c}_offset"][i, :n].T
            out.update({f"{c}_heat": heat, f"{c}_embed": embed.reshape_as(out[f"{c}_embed"]),
                        f"{c}_offset": offset.reshape_as(out[f"{c}_offset"])})
    return model, out


@pytest.mark.parametrize("head", ["fcos", "retina", "faster_rcnn", "cornernet"])
@pytest.mark.parametrize("nms", ["hard", "soft"])
def test_perfect_predictions_score_ap_1_through_the_evaluator(head, nms):
    budget = read_budget("smoke", [f"head={head}", f"nms={nms}"])
    model, out = _perfect(head, budget)
    found = model.detect(out, torch.tensor([[128.0, 128.0], [128.0, 128.0]]))
    ids, sizes = [1, 2], [CANVAS, CANVAS]
    truth = coco_ground_truth(ids, sizes, [b.numpy() for b in BOXES], [lb.numpy() for lb in LABELS], CLASSES)
    detections = coco_detections(ids, [f[0].numpy() for f in found], [f[1].numpy() for f in found],
                                 [f[2].numpy() for f in found])
    assert coco_ap(truth, detections)["AP"] == pytest.approx(1.0)
    if head == "cornernet":  # the decode recovers the boxes themselves
        for (boxes, _, labels), want, want_labels in zip(found, BOXES, LABELS):
            got = sorted(zip(labels.tolist(), boxes.tolist()))
            expected = sorted(zip(want_labels.tolist(), want.tolist()))
            assert [g[0] for g in got] == [e[0] for e in expected]
            np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], atol=1e-4)


def test_faster_rcnn_losses_stay_finite_for_images_without_boxes_and_without_rois():
    budget = read_budget("smoke", ["head=faster_rcnn"])
    head = build_head(budget, 8, len(CLASSES), LEVELS, 1)
    targets = target_maker(budget, LEVELS, len(CLASSES))(CANVAS, [torch.zeros(0, 4), BOXES[1]],
                                                          [torch.zeros(0, dtype=torch.long), LABELS[1]])
    feats = [torch.randn(2, 8, math.ceil(128 / 2 ** lv), math.ceil(128 / 2 ** lv)) for lv in LEVELS]
    torch.manual_seed(0)
    out = head(feats, targets)
    assert all(torch.isfinite(v) for v in head.loss(out, targets).values())
    none = {**out, **{k: out[k][:0] for k in ("rois", "roi_image", "roi_cls", "roi_box", "roi_labels", "roi_targets")}}
    losses = head.loss(none, targets)
    assert all(torch.isfinite(v) for v in losses.values()) and float(losses["roi_cls"].detach()) == 0.0


# --- every head trains end to end --------------------------------------------------------------

@pytest.mark.parametrize("sets", [["head=retina"], ["head=retina", "box_loss=giou", "anchors=3", "nms=soft"],
                                  ["head=faster_rcnn"], ["head=faster_rcnn", "roi_levels=adaptive_max"],
                                  ["head=faster_rcnn", "roi_levels=soft", "consistent_supervision=true"],
                                  ["head=cornernet"], ["head=fcos", "consistent_supervision=true"]])
def test_every_head_trains_on_the_smoke_budget_and_records_it(cache_dir, sets):
    from nasfpn.proxy.session import ProxySession
    from nasfpn.proxy.train import run_trial

    budget = read_budget("smoke", sets)
    session = ProxySession.open("synthetic", budget, cache=cache_dir, progress=False)
    metrics = run_trial(nasfpn.load("fpn"), session, progress=False, measure=False)
    assert 0.0 <= metrics["AP"] <= 1.0 and math.isfinite(metrics["final_losses"]["total"])
    assert read_budget("smoke", sets).as_dict() == metrics["budget_config"]
    recorded = budget_from_dict(metrics["budget_config"], "metrics.json")
    for s in sets:
        key, value = s.split("=")
        assert str(getattr(recorded, key)).lower() == value
    if "consistent_supervision=true" in sets:
        assert any(k.startswith("aux_") for k in metrics["final_losses"])


# --- consistent supervision ----------------------------------------------------------------------

@pytest.mark.parametrize("head", ["fcos", "retina", "faster_rcnn", "cornernet"])
def test_consistent_supervision_adds_exactly_the_weighted_lateral_losses_to_the_one_backward(head):
    from nasfpn.proxy.model import Detector

    budget = read_budget("smoke", [f"head={head}", "consistent_supervision=true", "supervision_weight=0.3"])
    torch.manual_seed(0)
    detector = Detector(nasfpn.load("fpn"), len(CLASSES), 8, 1, backbone_channels=(8, 8, 8), budget=budget).double()
    detector.train()
    detector.neck.eval()  # fixed batch-norm statistics: each forward is the same function
    feats = [torch.randn(2, 8, s, s, dtype=torch.float64) for s in (16, 8, 4)]
    targets = {k: (v.double() if v.is_floating_point() else v)
               for k, v in target_maker(budget, LEVELS, len(CLASSES))(CANVAS, BOXES, LABELS).items()}
    params = [p for p in detector.parameters() if p.requires_grad]

    def grads(loss):
        got = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(got, params)]

    torch.manual_seed(1)
    losses = detector.loss(detector(None, feats, targets), targets)
    main = {k: v for k, v in losses.items() if not k.startswith("aux_") and k != "total"}
    aux = {k[4:]: v for k, v in losses.items() if k.startswith("aux_") and k != "aux_total"}
    assert set(aux) == set(main) and len(main) >= 2
    torch.testing.assert_close(losses["total"], sum(main.values()) + 0.3 * sum(aux.values()))
    together = grads(losses["total"])
    torch.manual_seed(1)
    again = detector.loss(detector(None, feats, targets), targets)
    main_grads = grads(sum(v for k, v in again.items() if k in main))
    aux_grads = grads(sum(v for k, v in again.items() if k.startswith("aux_") and k != "aux_total"))
    for a, b, c in zip(together, main_grads, aux_grads):
        torch.testing.assert_close(a, b + 0.3 * c, rtol=1e-7, atol=1e-10)  # double precision, summed in another order
    names = [n for n, p in detector.named_parameters() if p.requires_grad]
    assert any(g.abs().sum() > 0 for n, g in zip(names, aux_grads) if ".stem.laterals." in n)
