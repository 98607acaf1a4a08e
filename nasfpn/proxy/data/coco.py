"""`coco:DIR`: a COCO-format directory as users bring their own data.

    DIR/annotations/instances_train.json, DIR/annotations/instances_val.json
    images under DIR/train/, DIR/train2017/, DIR/images/train/ or DIR/ (by `file_name`)

Broken inputs end with a DataError naming the file and the item; zero-area boxes and crowd
annotations are skipped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...files import FileProblem, read_text
from .dataset import DataError, DetectionData, Split

BOX_TOLERANCE = 1.0  # pixels a box may exceed its image by (rounding in exported annotations)


def _load_json(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: annotations file not found")
    try:
        data = json.loads(read_text(path))
    except FileProblem as problem:
        raise DataError(str(problem)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise DataError(f"{path}: not valid annotations: nested too deeply") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing the list '{key}'")
    return data


def _find_image(root: Path, split: str, file_name: str) -> Path | None:
    for folder in (root / split, root / f"{split}2017", root / "images" / split, root):
        if (folder / file_name).is_file():
            return folder / file_name
    return None


def _decode(path: Path, where: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path} ({where}): image does not decode: {exc}") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _letterbox(img: torch.Tensor, size: int) -> tuple[torch.Tensor, float]:
    h, w = img.shape[-2:]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(img[None].float(), size=(nh, nw), mode="bilinear", antialias=True,
                            align_corners=False)[0]
    out = torch.zeros(3, size, size, dtype=torch.uint8)
    out[:, :nh, :nw] = resized.round().clamp(0, 255).to(torch.uint8)
    return out, scale


def read_split(root: Path, split: str, size: int, categories: dict[int, int] | None,
               skipped: dict[str, int]) -> tuple[Split, dict[int, int], list[str]]:
    path = root / "annotations" / f"instances_{split}.json"
    data = _load_json(path)
    if categories is None:
        cats = sorted(data["categories"], key=lambda c: c.get("id", 0))
        if not cats:
            raise DataError(f"{path}: 'categories' is empty")
        categories = {int(c["id"]): i for i, c in enumerate(cats)}
        names = [str(c.get("name", c["id"])) for c in cats]
    else:
        names = []
    images = data["images"]
    if not images:
        raise DataError(f"{path}: the {split} split has no images")
    index: dict[int, int] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict) or not {"id", "file_name"} <= set(im):
            raise DataError(f"{path}: images[{i}]: needs 'id' and 'file_name'")
        index[int(im["id"])] = i
    boxes: list[list] = [[] for _ in images]
    labels: list[list] = [[] for _ in images]
    tensors, sizes, scales = [], [], []
    for i, im in enumerate(images):
        where = f"images[{i}], id {im['id']}"
        found = _find_image(root, split, str(im["file_name"]))
        if found is None:
            raise DataError(f"{path}: {where}: image file '{im['file_name']}' not found under {root}")
        img = _decode(found, where)
        h, w = int(img.shape[1]), int(img.shape[2])
        boxed, scale = _letterbox(img, size)
        tensors.append(boxed)
        sizes.append((h, w))
        scales.append(scale)
    for j, ann in enumerate(data["annotations"]):
        where = f"annotations[{j}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= set(ann):
            raise DataError(f"{path}: {where}: needs 'image_id', 'category_id' and 'bbox'")
        if int(ann["image_id"]) not in index:
            raise DataError(f"{path}: {where}: image_id {ann['image_id']} is not in 'images'")
        if int(ann["category_id"]) not in categories:
            raise DataError(f"{path}: {where}: category_id {ann['category_id']} is not declared in "
                            f"'categories'")
        i = index[int(ann["image_id"])]
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(f"{path}: {where}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, bw, bh = (float(v) for v in bbox)
        if ann.get("iscrowd", 0):
            skipped["crowd annotations"] = skipped.get("crowd annotations", 0) + 1
            continue
        if bw == 0 or bh == 0:
            skipped["zero-area boxes"] = skipped.get("zero-area boxes", 0) + 1
            continue
        h, w = sizes[i]
        if (bw < 0 or bh < 0 or x < -BOX_TOLERANCE or y < -BOX_TOLERANCE
                or x + bw > w + BOX_TOLERANCE or y + bh > h + BOX_TOLERANCE):
            raise DataError(f"{path}: {where}: bbox {bbox} lies outside its image "
                            f"{images[i]['file_name']} ({w}x{h})")
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + bw, float(w)), min(y + bh, float(h))
        boxes[i].append([x1 * scales[i], y1 * scales[i], x2 * scales[i], y2 * scales[i]])
        labels[i].append(categories[int(ann["category_id"])])
    if not any(labels):
        raise DataError(f"{path}: the {split} split has no usable annotations")
    split_data = Split(
        images=torch.stack(tensors),
        boxes=[np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
        labels=[np.asarray(lb, np.int64) for lb in labels],
        image_ids=[int(im["id"]) for im in images],
        orig_sizes=sizes, scales=np.asarray(scales, np.float64))
    return split_data, categories, names


def load_coco_dir(root: str | Path, image_size: int) -> DetectionData:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected a COCO-format directory)")
    skipped: dict[str, int] = {}
    train, categories, names = read_split(root, "train", image_size, None, skipped)
    val, _, _ = read_split(root, "val", image_size, categories, skipped)
    notes = [f"skipped {n} {what}" for what, n in skipped.items()]
    stamp = "-".join(str(int((root / "annotations" / f"instances_{s}.json").stat().st_mtime_ns))
                     for s in ("train", "val"))
    return DetectionData(name=f"coco:{root}", key=f"coco-{root.resolve()}-{stamp}-{image_size}",
                         classes=names, image_size=image_size, train=train, val=val, notes=notes)
