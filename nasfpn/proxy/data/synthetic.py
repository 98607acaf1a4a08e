"""`synthetic`: a procedural detection dataset, generated deterministically from a seed.

Six shape classes (disc, ring, square, triangle, cross, diamond) whose colour and texture are
random, so only shape tells them apart. Object sizes are log-uniform from a few pixels to most of
the image, so every pyramid level has work; objects occlude each other and are occluded by
clutter drawn on top (an object less than 35% visible is dropped, boxes cover the visible part);
the background has gradients, low-frequency noise, distractor blobs and lines. Image i depends
only on (seed, split, i), so any subset regenerates identically.
"""

from __future__ import annotations

import math

import numpy as np

CLASSES = ("disc", "ring", "square", "triangle", "cross", "diamond")
MIN_VISIBLE = 0.35


def _shape_mask(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if cls == 0:
        return u * u + v * v <= 1.0
    if cls == 1:
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    if cls == 2:
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if cls == 3:
        return (v >= -1.0) & (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if cls == 4:
        return ((np.abs(u) <= 0.33) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 1.0))
    return np.abs(u) + np.abs(v) <= 1.0


def _texture(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Colour of an object's pixels: plain, stripes or checker between two random colours."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(base, ys.shape + (3,))
    other = rng.uniform(0, 1, 3)
    period = rng.uniform(2.5, 8.0)
    if kind == 1:
        angle = rng.uniform(0, math.pi)
        t = (np.cos(angle) * xs + np.sin(angle) * ys) / period
        mix = (np.floor(t) % 2)[..., None]
    else:
        mix = ((np.floor(xs / period) + np.floor(ys / period)) % 2)[..., None]
    return base * (1 - mix) + other * mix


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    angle = rng.uniform(0, 2 * math.pi)
    t = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    coarse = rng.normal(0, 0.12, (5, 5, 3))
    idx = np.linspace(0, 4, size)
    i0 = np.clip(idx.astype(int), 0, 3)
    f = (idx - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]
    low = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]
    return (img + low).astype(np.float32)


def _line(rng: np.random.Generator, size: int):
    x0, y0, x1, y1 = rng.uniform(0, size, 4)
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    t = np.linspace(0, 1, n)
    xs = np.clip((x0 + (x1 - x0) * t).astype(int), 0, size - 1)
    ys = np.clip((y0 + (y1 - y0) * t).astype(int), 0, size - 1)
    width = int(rng.integers(1, 3))
    pts_y = np.concatenate([np.clip(ys + d, 0, size - 1) for d in range(width)])
    pts_x = np.concatenate([xs for _ in range(width)])
    return pts_y, pts_x


def render(seed: int, split: str, index: int, size: int, max_objects: int = 10):
    """One image (float32 HxWx3 in [0, 1]), its boxes (x1, y1, x2, y2; pixels) and labels."""
    split_id = {"train": 0, "val": 1}[split]
    rng = np.random.default_rng([seed, split_id, index])
    img = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int32)

    for _ in range(int(rng.integers(2, 7))):  # distractor blobs under the objects
        r = rng.uniform(1.5, size * 0.06)
        cy, cx = rng.uniform(0, size, 2)
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, size))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, size))
        ys, xs = np.mgrid[y0:y1, x0:x1]
        m = ((ys - cy) / r) ** 2 + ((xs - cx) / (r * rng.uniform(0.4, 1.6))) ** 2 <= 1
        img[y0:y1, x0:x1][m] = rng.uniform(0, 1, 3)
    for _ in range(int(rng.integers(0, 4))):
        py, px = _line(rng, size)
        img[py, px] = rng.uniform(0, 1, 3)

    n = int(min(max_objects, 1 + rng.poisson(3.5)))
    areas, labels = [], []
    lo, hi = math.log(6.0), math.log(size * 0.85)
    for _ in range(n):
        cls = int(rng.integers(len(CLASSES)))
        s = math.exp(rng.uniform(lo, hi))
        aspect = math.exp(rng.uniform(-0.3, 0.3))
        h, w = s * aspect, s / aspect
        cy = rng.uniform(h / 2, size - h / 2) if h < size else size / 2
        cx = rng.uniform(w / 2, size - w / 2) if w < size else size / 2
        y0, y1 = int(max(math.floor(cy - h / 2), 0)), int(min(math.ceil(cy + h / 2), size))
        x0, x1 = int(max(math.floor(cx - w / 2), 0)), int(min(math.ceil(cx + w / 2), size))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        mask = _shape_mask(cls, (xs - cx) / (w / 2), (ys - cy) / (h / 2))
        if mask.sum() < 4:
            continue
        colour = _texture(rng, ys, xs, rng.uniform(0, 1, 3))
        region = img[y0:y1, x0:x1]
        region[mask] = colour[mask]
        owner[y0:y1, x0:x1][mask] = len(labels)
        areas.append(int(mask.sum()))
        labels.append(cls)

    for _ in range(int(rng.integers(0, 3))):  # clutter on top: occludes objects
        py, px = _line(rng, size)
        img[py, px] = rng.uniform(0, 1, 3)
        owner[py, px] = -1

    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    boxes, kept = [], []
    for i, (area, cls) in enumerate(zip(areas, labels)):
        ys, xs = np.nonzero(owner == i)
        if len(ys) < MIN_VISIBLE * area or len(ys) < 3:
            continue
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        kept.append(cls)
    return (np.clip(img, 0, 1), np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(kept, np.int64))
