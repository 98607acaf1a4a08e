"""`--data coco:DIR`: a tiny COCO-format directory the tests write, and every broken-input case."""

import json

import numpy as np
import pytest
from PIL import Image

from nasfpn.cli import main
from nasfpn.proxy.data import DataError, load_data
from nasfpn.proxy.data.synthetic import render


def write_coco(root, n_train=6, n_val=3, size=(80, 60)):
    """Synthetic images saved as PNG files of a non-square size, with COCO annotations."""
    (root / "annotations").mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir()
        images, annotations = [], []
        for i in range(n):
            img, boxes, labels = render(7, split, i, 96)
            crop = (img[: size[1], : size[0]] * 255).astype(np.uint8)
            Image.fromarray(crop).save(root / split / f"{i:04d}.png")
            images.append({"id": 100 + i, "file_name": f"{i:04d}.png", "width": size[0], "height": size[1]})
            for b, lb in zip(boxes, labels):
                x1, y1 = float(b[0]), float(b[1])
                x2, y2 = min(float(b[2]), size[0]), min(float(b[3]), size[1])
                if x2 - x1 > 1 and y2 - y1 > 1:
                    annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": int(lb) + 10,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                        "iscrowd": 0})
        categories = [{"id": 10 + k, "name": f"class{k}"} for k in range(6)]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def edit(root, split, fn):
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_coco_directory_reads_an_index_with_original_coordinates(tmp_path):
    root = write_coco(tmp_path / "coco")
    data = load_data(f"coco:{root}", train_images=100, val_images=100)
    assert data.classes == [f"class{k}" for k in range(6)]
    assert len(data.train) == 6 and len(data.val) == 3 and data.train.sizes[0] == (60, 80)
    assert tuple(data.train.images.read(0).shape) == (3, 60, 80)  # decoded on demand, at its own size
    gt = data.val.ground_truth(data.classes)
    original = json.loads((root / "annotations" / "instances_val.json").read_text())
    assert len(gt["annotations"]) == len(original["annotations"])
    np.testing.assert_allclose(gt["annotations"][0]["bbox"], original["annotations"][0]["bbox"], atol=1e-3)


def test_a_coco_subset_is_deterministic_and_grows_by_keeping_the_smaller_one(tmp_path):
    root = write_coco(tmp_path / "coco", n_train=12)
    four, again, eight = (load_data(f"coco:{root}", train_images=n, val_images=2) for n in (4, 4, 8))
    assert four.train.image_ids == again.train.image_ids and len(four.train) == 4 and len(four.val) == 2
    assert set(four.train.image_ids) < set(eight.train.image_ids)
    assert four.key != eight.key
    assert "train: a subset of 4 of its 12 images (seed 0)" in four.notes
    other = load_data(f"coco:{root}", train_images=4, val_images=2, seed=1)
    assert other.train.image_ids != four.train.image_ids


def test_smoke_training_on_a_coco_directory(tmp_path, cache_dir):
    root = write_coco(tmp_path / "coco")
    out = tmp_path / "run"
    rc = main(["train", "--neck", "fpn", "--data", f"coco:{root}", "--budget", "smoke", "--out", str(out),
               "--cache", str(cache_dir), "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == f"coco:{root}" and 0.0 <= metrics["AP"] <= 1.0


def _missing_annotations(root):
    (root / "annotations" / "instances_train.json").unlink()


def _unparsable(root):
    (root / "annotations" / "instances_val.json").write_text('{"images": [')


def _missing_image(root):
    (root / "train" / "0002.png").unlink()


def _undecodable(root):
    (root / "val" / "0001.png").write_bytes(b"not a png at all")


def _undeclared_category(root):
    edit(root, "train", lambda d: d["annotations"][1].update(category_id=99))


def _box_outside(root):
    edit(root, "val", lambda d: d["annotations"][0].update(bbox=[70.0, 10.0, 30.0, 5.0]))


def _empty_split(root):
    edit(root, "val", lambda d: d.update(images=[], annotations=[]))


def _no_annotations(root):
    edit(root, "train", lambda d: d.update(annotations=[]))


def _unknown_image_id(root):
    edit(root, "train", lambda d: d["annotations"][0].update(image_id=12345))


def _bad_bbox(root):
    edit(root, "train", lambda d: d["annotations"][0].update(bbox=[1, 2, 3]))


@pytest.mark.parametrize("breaker, fragments", [
    (_missing_annotations, ["instances_train.json", "not found"]),
    (_unparsable, ["instances_val.json", "not valid JSON", "line 1"]),
    (_missing_image, ["instances_train.json", "images[2], id 102", "0002.png", "not found"]),
    (_undecodable, ["0001.png", "images[1], id 101", "does not decode"]),
    (_undeclared_category, ["instances_train.json", "annotations[1]", "category_id 99", "not declared"]),
    (_box_outside, ["instances_val.json", "annotations[0]", "outside its image", "0000.png (80x60)"]),
    (_empty_split, ["instances_val.json", "val split has no images"]),
    (_no_annotations, ["instances_train.json", "no usable annotations"]),
    (_unknown_image_id, ["annotations[0]", "image_id 12345"]),
    (_bad_bbox, ["annotations[0]", "bbox must be [x, y, width, height]"]),
])
def test_broken_coco_inputs_exit_2_naming_file_and_item(tmp_path, cache_dir, capsys, breaker, fragments):
    root = write_coco(tmp_path / "coco")
    breaker(root)
    if breaker is not _undecodable:  # checked before training; an image decodes only when a batch needs it
        with pytest.raises(DataError):
            load_data(f"coco:{root}")
    rc = main(["train", "--neck", "fpn", "--data", f"coco:{root}", "--budget", "smoke",
               "--out", str(tmp_path / "run"), "--cache", str(cache_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in err


def test_zero_area_boxes_are_skipped_and_counted(tmp_path, cache_dir, capsys):
    root = write_coco(tmp_path / "coco")
    edit(root, "train", lambda d: [a.update(bbox=[5.0, 5.0, 0.0, 4.0]) for a in d["annotations"][:2]])
    data = load_data(f"coco:{root}")
    assert data.notes == ["skipped 2 zero-area boxes"]
    rc = main(["train", "--neck", "fpn", "--data", f"coco:{root}", "--budget", "smoke",
               "--out", str(tmp_path / "run"), "--cache", str(cache_dir), "--no-progress"])
    assert rc == 0 and "skipped 2 zero-area boxes" in capsys.readouterr().out
