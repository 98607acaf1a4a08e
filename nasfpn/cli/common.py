"""Helpers shared by subcommands."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


class UserError(Exception):
    """A mistake in what the user asked for (bad option, missing file): one line, exit code 2."""


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"expected positive integers, got '{text}'")
    return values


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def write_json(path: Path, data) -> None:
    """Write atomically: a failed write never leaves half a file in place of a good one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, default=_jsonable, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _finite(value):
    """NaN (a metric with nothing to measure, e.g. APl without large objects) -> null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device is available here (use --device cpu)")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices")
        return device
    raise UserError(f"--device {device}: expected cpu, cuda or cuda:N")


def proxy_session(args, levels):
    """Data, budget and the shared backbone/features for the proxy-trainer options."""
    import torch

    from ..proxy.budgets import get_budget
    from ..proxy.data import load_data
    from ..proxy.prepare import prepare

    device = check_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise UserError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if args.steps is not None and args.steps < 1:
        raise UserError("--steps must be at least 1")
    budget = get_budget(args.budget, steps=args.steps)
    data = load_data(args.data, budget.image_size, budget.train_images, budget.val_images,
                     cache=args.cache)
    for note in data.notes:
        print(f"warning: {args.data}: {note}")
    prepared = prepare(data, budget, levels=tuple(levels), device=device, backbone_seed=args.backbone_seed,
                       cache=args.cache, progress=not args.no_progress)
    return prepared, device
