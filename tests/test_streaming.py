"""Streamed data: a COCO directory of images of several sizes and aspect ratios, read a batch at a
time by DataLoader workers, augmented with flip and scale jitter, padded, and scored in the
original coordinates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nasfpn.dsl.budget import read_budget
from nasfpn.proxy.data import load_data
from nasfpn.proxy.evaluate import coco_ap, coco_detections
from nasfpn.proxy.heads.fcos import FcosTargets, decode
from nasfpn.proxy.loader import Collate, Frame, InOrder, Items, TrainOrder, batches, flip_boxes

SIZES = [(160, 120), (90, 200), (128, 128), (300, 100), (64, 96), (211, 157)]  # (w, h)
LEVELS = (3, 4, 5, 6, 7)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A COCO directory whose images have the sizes above, each with a few boxes."""
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir()
        images, annotations = [], []
        for i, (w, h) in enumerate(SIZES):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / split / f"{i}.jpg")
            images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h})
            for _ in range(3):
                bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1 + i % 2,
                                    "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return load_data(f"coco:{root}", train_images=100, val_images=100)


def _stream(data, workers: int, seed: int, augment=("flip", "jitter"), steps: int = 6):
    frame = Frame(96, 128)
    items = Items(data.train, frame, images=True, augment=augment, jitter=(0.6, 1.4))
    collate = Collate(frame, FcosTargets(LEVELS, len(data.classes)), square=False)
    return list(batches(items, TrainOrder(len(data.train), 3, steps, seed), collate, workers, pin=False))


def test_the_same_seed_gives_the_same_batches_with_any_number_of_workers(coco):
    a, b, c = _stream(coco, 0, seed=3), _stream(coco, 2, seed=3), _stream(coco, 2, seed=4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.index, y.index) and torch.equal(x.images, y.images)
        assert x.targets.keys() == y.targets.keys() == {"cls", "box"}
        assert all(torch.equal(x.targets[k], y.targets[k]) for k in x.targets) and x.canvas == y.canvas
    assert any(not torch.equal(x.index, y.index) or not torch.equal(x.images, y.images) for x, y in zip(a, c))


def test_batches_keep_the_aspect_ratio_and_pad_to_the_coarsest_stride(coco):
    for batch in _stream(coco, 0, seed=0, augment=()):
        assert all(side % 128 == 0 for side in batch.canvas)
        for k, i in enumerate(batch.index.tolist()):
            h, w = coco.train.sizes[i]
            assert float(batch.scales[k]) == pytest.approx(96 / max(h, w))
            nw, nh = batch.extents[k].tolist()
            assert abs(nw / nh - w / h) < 0.05 and max(nw, nh) == 96
            assert batch.images[k, :, int(nh):, :].max() == 0 and batch.images[k, :, :, int(nw):].max() == 0


def test_flip_applied_twice_is_the_identity_on_boxes():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (20, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (20, 2)).astype(np.float32)], 1)
    once = flip_boxes(boxes, 97.0)
    assert np.all(once[:, 2] > once[:, 0]) and not np.allclose(once, boxes)
    np.testing.assert_allclose(flip_boxes(once, 97.0), boxes, atol=1e-5)


def test_a_flipped_image_carries_its_boxes_along(coco):
    frame = Frame(96, 128)
    plain = Items(coco.train, frame, images=True)
    flipped = Items(coco.train, frame, images=True, augment=("flip",))
    for draw in range(40):
        got = flipped[(0, (0, draw, 0))]
        base = plain[(0, None)]
        if not np.array_equal(got["boxes"], base["boxes"]):
            w = got["extent"][0]
            assert torch.equal(got["image"], base["image"].flip(-1))
            np.testing.assert_allclose(got["boxes"], flip_boxes(base["boxes"], float(w)), atol=1e-5)
            return
    pytest.fail("no draw flipped the image")


def test_scale_jitter_keeps_boxes_inside_the_image(coco):
    scales = set()
    for batch in _stream(coco, 0, seed=5, steps=12):
        for k, boxes in enumerate(batch.boxes):
            nw, nh = batch.extents[k].tolist()
            scales.add(round(float(batch.scales[k]), 3))
            assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= nw) and np.all(boxes[:, [1, 3]] <= nh)
            assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert len(scales) > 6  # jitter varies the scale


def test_padding_is_not_counted_in_ap_boxes_map_back_to_the_original_images(coco):
    """Ground-truth boxes, through the network frame and back as detections, score AP 1; a box
    that runs into the padding is clamped to its image, not to the canvas."""
    frame = Frame(96, 128)
    items = Items(coco.val, frame, images=False)
    ids, boxes, scores, labels = [], [], [], []
    for batch in batches(items, InOrder(len(coco.val), 4), Collate(frame, None, square=False), 0, pin=False):
        for k, i in enumerate(batch.index.tolist()):
            ids.append(coco.val.image_ids[i])
            boxes.append(batch.boxes[k] / float(batch.scales[k]))
            scores.append(np.ones(len(batch.boxes[k])))
            labels.append(coco.val.labels[i])
    assert coco_ap(coco.val.ground_truth(coco.classes), coco_detections(ids, boxes, scores, labels))["AP"] == 1.0
    points = torch.tensor([[90.0, 20.0]])
    far = torch.tensor([[[5.0, 5.0, 50.0, 5.0]]])  # a box from x=85 to x=140, past a 96-wide image
    ((box, _, _),) = decode(torch.full((1, 1, 1), 5.0), far, torch.full((1, 1), 5.0), points,
                            extents=torch.tensor([[96.0, 72.0]]))
    assert box.tolist() == [[85.0, 15.0, 96.0, 25.0]]


def test_a_coco_session_streams_frozen_backbone_training_with_augmentation(coco, tmp_path):
    import nasfpn
    from nasfpn.proxy.session import ProxySession
    from nasfpn.proxy.train import run_trial

    budget = read_budget("smoke", ["image_size=96", "backbone_mode=frozen", "augment=flip+jitter", "steps=4"])
    session = ProxySession.from_data(coco, budget, cache=tmp_path, progress=False, workers=2)
    assert session.train_feats is None and session.feature_source == "live" and session.workers == 2
    m = run_trial(nasfpn.load("fpn"), session, seed=0, progress=False, measure=False)
    again = run_trial(nasfpn.load("fpn"), session, seed=0, progress=False, measure=False)
    assert m["final_losses"] == again["final_losses"] and 0 <= m["AP"] <= 1


def test_over_the_cache_limit_the_frozen_backbone_runs_live_with_the_cached_numbers(coco, tmp_path, capsys):
    import nasfpn
    from nasfpn.proxy.session import ProxySession
    from nasfpn.proxy.train import run_trial

    budget = read_budget("smoke", ["image_size=96", "steps=4"])
    cached = ProxySession.from_data(coco, budget, cache=tmp_path, progress=False, workers=0)
    live = ProxySession.from_data(coco, budget, cache=tmp_path, progress=False, workers=0, cache_limit_gb=1e-6)
    assert cached.feature_source == "disk cache" and live.train_feats is None
    assert "over the cache limit of 1e-06 GB (--cache-limit)" in capsys.readouterr().err
    a = run_trial(nasfpn.load("fpn"), cached, seed=0, progress=False, measure=False)
    b = run_trial(nasfpn.load("fpn"), live, seed=0, progress=False, measure=False)
    assert a["features"] == "disk cache" and b["features"] == "live (over the cache limit)"
    assert a["final_losses"] == pytest.approx(b["final_losses"], rel=1e-4)
