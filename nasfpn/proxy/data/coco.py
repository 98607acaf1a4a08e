"""`coco:DIR`: a COCO-format directory as users bring their own data.

    DIR/annotations/instances_train.json, DIR/annotations/instances_val.json
    images under DIR/train/, DIR/train2017/, DIR/images/train/ or DIR/ (by `file_name`)

Only the annotations are read here, and every image file of the chosen subset is checked to
exist; images are decoded later, a batch at a time, by the loader's workers. Broken inputs end
with a DataError naming the file and the item; zero-area boxes and crowd annotations are skipped
and counted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ...files import FileProblem, read_text
from .dataset import DataError, DetectionData, FileImages, Split

BOX_TOLERANCE = 1.0  # pixels a box may exceed its image by (rounding in exported annotations)
MAX_ANNOTATION_BYTES = 4 << 30  # COCO train2017's instances file: 448 MB


def _load_json(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: annotations file not found")
    try:
        data = json.loads(read_text(path, MAX_ANNOTATION_BYTES, "MAX_ANNOTATION_BYTES"))
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


def _image_size(path: Path, im: dict, where: str) -> tuple[int, int]:
    """(h, w) from the annotation, else from the file's header (not a decode)."""
    h, w = im.get("height"), im.get("width")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            width, height = opened.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"{path} ({where}): image does not decode: {exc}") from None
    return int(height), int(width)


def subset_indices(total: int, n: int, seed: int) -> list[int]:
    """A deterministic subset of n of `total` items, in file order; a larger n keeps every item
    of a smaller one (the same seeded permutation, a longer prefix of it)."""
    if n >= total:
        return list(range(total))
    order = np.random.default_rng([seed, total]).permutation(total)
    return sorted(int(i) for i in order[:n])


def read_split(root: Path, split: str, limit: int, seed: int, categories: dict[int, int] | None,
               skipped: dict[str, int]) -> tuple[Split, dict[int, int], list[str], int]:
    path = root / "annotations" / f"instances_{split}.json"
    data = _load_json(path)
    if categories is None:
        cats = data["categories"]
        for i, c in enumerate(cats):
            if not isinstance(c, dict) or not isinstance(c.get("id"), int):
                raise DataError(f"{path}: categories[{i}]: needs an integer 'id'")
        cats = sorted(cats, key=lambda c: c["id"])
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
        if not isinstance(im, dict) or not {"id", "file_name"} <= set(im) or not isinstance(im["id"], int):
            raise DataError(f"{path}: images[{i}]: needs an integer 'id' and a 'file_name'")
        index[im["id"]] = i
    chosen = subset_indices(len(images), limit, seed)
    position = {i: k for k, i in enumerate(chosen)}
    files, where, sizes = [], [], []
    for i in chosen:
        im = images[i]
        here = f"images[{i}], id {im['id']}"
        found = _find_image(root, split, str(im["file_name"]))
        if found is None:
            raise DataError(f"{path}: {here}: image file '{im['file_name']}' not found under {root}")
        files.append(str(found))
        where.append(f"{path.name} {here}")
        sizes.append(_image_size(found, im, here))
    boxes: list[list] = [[] for _ in chosen]
    labels: list[list] = [[] for _ in chosen]
    for j, ann in enumerate(data["annotations"]):
        here = f"annotations[{j}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= set(ann):
            raise DataError(f"{path}: {here}: needs 'image_id', 'category_id' and 'bbox'")
        if not isinstance(ann["image_id"], int) or ann["image_id"] not in index:
            raise DataError(f"{path}: {here}: image_id {ann['image_id']!r} is not in 'images'")
        if not isinstance(ann["category_id"], int) or ann["category_id"] not in categories:
            raise DataError(f"{path}: {here}: category_id {ann['category_id']!r} is not declared in "
                            f"'categories'")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(f"{path}: {here}: bbox must be [x, y, width, height], got {bbox!r}")
        k = position.get(index[ann["image_id"]])
        if k is None:  # outside the subset
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        if ann.get("iscrowd", 0):
            skipped["crowd annotations"] = skipped.get("crowd annotations", 0) + 1
            continue
        if bw == 0 or bh == 0:
            skipped["zero-area boxes"] = skipped.get("zero-area boxes", 0) + 1
            continue
        h, w = sizes[k]
        if (bw < 0 or bh < 0 or x < -BOX_TOLERANCE or y < -BOX_TOLERANCE
                or x + bw > w + BOX_TOLERANCE or y + bh > h + BOX_TOLERANCE):
            raise DataError(f"{path}: {here}: bbox {bbox} lies outside its image "
                            f"{images[chosen[k]]['file_name']} ({w}x{h})")
        boxes[k].append([max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))])
        labels[k].append(categories[ann["category_id"]])
    if not any(labels):
        raise DataError(f"{path}: the {split} split has no usable annotations")
    out = Split(images=FileImages(files, where),
                boxes=[np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
                labels=[np.asarray(lb, np.int64) for lb in labels],
                image_ids=[int(images[i]["id"]) for i in chosen], sizes=sizes)
    return out, categories, names, len(images)


def load_coco_dir(root: str | Path, train_images: int, val_images: int, seed: int = 0) -> DetectionData:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected a COCO-format directory)")
    skipped: dict[str, int] = {}
    train, categories, names, n_train = read_split(root, "train", train_images, seed, None, skipped)
    val, _, _, n_val = read_split(root, "val", val_images, seed, categories, skipped)
    notes = [f"skipped {n} {what}" for what, n in skipped.items()]
    for split, used, total in (("train", len(train), n_train), ("val", len(val), n_val)):
        if used < total:
            notes.append(f"{split}: a subset of {used} of its {total} images (seed {seed})")
    stamp = hashlib.sha1()
    for s in ("train", "val"):
        st = (root / "annotations" / f"instances_{s}.json").stat()
        stamp.update(f"{s}|{st.st_size}|{st.st_mtime_ns}|".encode())
    stamp.update(f"{root.resolve()}|{len(train)}|{len(val)}|{seed}".encode())
    return DetectionData(name=f"coco:{root}", key=f"coco-{stamp.hexdigest()[:16]}", classes=names,
                         train=train, val=val, notes=notes)
