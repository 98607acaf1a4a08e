"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Callable

from ..errors import NasfpnError
from ..files import write_text

MAX_IMAGE_SIZE = 8192      # pixels, for FLOPs, latency and export shapes
MAX_IN_CHANNELS = 8192     # a backbone map's width (ResNet-50's C5: 2048)


class UserError(NasfpnError):
    """A mistake in what the user asked for (bad option, missing file): one line, exit code 2."""


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low or (high is not None and value > high):
            span = f"{low}..{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text}")
        return value
    return parse


def seed(text: str) -> int:
    """An argparse type: a seed, 0..2^32 - 1."""
    return bounded_int(0, 2 ** 32 - 1)(text)


def finite_float(low: float, positive: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (> low when `positive`); NaN and inf refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not math.isfinite(value) or value < low or (positive and value == low):
            bound = f"greater than {low:g}" if positive else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text}")
        return value
    return parse


def count(text: str) -> float:
    """An argparse type: a positive count, plain or with K, M or G (`2.5M`, `0.1G`, `3e7`)."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text.strip()[-1:].upper(), 1.0)
    number = text.strip()[:-1] if scale != 1.0 else text.strip()
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 3e7, 2.5M or 0.1G, got '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got '{text}'")
    return value


def int_list(text: str, maximum: int = MAX_IN_CHANNELS) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 or v > maximum for v in values):
        raise UserError(f"expected integers in 1..{maximum}, got '{text}'")
    return values


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def write_json(path: Path, data) -> None:
    """Write atomically: a failed write never leaves half a file in place of a good one."""
    write_text(path, json.dumps(_finite(data), indent=2, default=_jsonable, allow_nan=False) + "\n")


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


def add_budget_options(p) -> None:
    """--budget, --set, --steps and the machine's loader and cache settings (every command that trains)."""
    p.add_argument("--budget", default="proxy", metavar="NAME|FILE",
                   help="a preset (smoke, quick, proxy, full: budgets/*.yaml) or a budget YAML file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a budget field, e.g. --set image_size=512 --set batch=8 (repeatable)")
    p.add_argument("--steps", type=bounded_int(1), help="the same as --set steps=N")
    p.add_argument("--cache-limit", type=finite_float(0, positive=True), default=None, metavar="GB",
                   help="largest frozen-feature cache to write (default 20 GB); above it the frozen "
                        "backbone runs live")
    p.add_argument("--workers", type=bounded_int(0, 64), default=None,
                   help="loader processes that decode images (default: up to 4, one core left; in a "
                        "search, a trial's CPUs less one)")


def budget_of(args):
    """The budget the options name, with every --set applied (a bad field: one line, exit 2); with
    a --device, also checked against it (fp16 on a CPU: one line, before anything runs)."""
    from ..dsl.budget import read_budget
    from ..proxy.precision import resolve

    budget = read_budget(args.budget, budget_sets(args))
    if getattr(args, "device", None) is not None:
        resolve(budget.precision, check_device(args.device))
    return budget


def budget_sets(args) -> list[str]:
    return list(args.sets) + ([f"steps={args.steps}"] if args.steps is not None else [])


def session_spec(args, levels, budget):
    """The description of the proxy session the proxy-trainer options ask for."""
    from ..proxy.session import DEFAULT_CACHE_LIMIT_GB, SessionSpec

    return SessionSpec(args.data, budget, tuple(levels), args.backbone_seed,
                       cache=str(args.cache) if args.cache is not None else None,
                       cache_limit_gb=args.cache_limit or DEFAULT_CACHE_LIMIT_GB, workers=args.workers)


def proxy_session(args, levels, budget=None):
    """The proxy session (data, budget, shared backbone and features) the proxy-trainer options ask
    for, in this process; `budget` when the caller has read it already."""
    import torch

    budget = budget or budget_of(args)
    device = check_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    session = session_spec(args, levels, budget).open(device, progress=not args.no_progress)
    for note in session.data.notes:
        print(f"warning: {args.data}: {note}")
    return session


def add_cluster_options(p) -> None:
    """Where the runs of baselines, confirm and calibrate train: here, or as Ray tasks on a cluster."""
    p.add_argument("--address", help="a Ray cluster to train on, every (neck, seed) run a Ray task, as many at "
                                     "once as it holds (default: $RAY_ADDRESS; without either, the runs train "
                                     "in this process, one after another)")
    p.add_argument("--cpus-per-trial", type=finite_float(0, positive=True), default=1,
                   help="CPUs each run holds on the cluster (default 1)")
    p.add_argument("--gpus-per-trial", type=finite_float(0), default=0,
                   help="GPUs each run holds on the cluster; a fraction (0.25) lets small runs share one")


def remote_runs(args):
    """The cluster the options name, joined and checked (a RemoteRuns), or None: train here."""
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        if args.gpus_per_trial:
            raise UserError("--gpus-per-trial needs a cluster (--address); on this machine use --device cuda")
        return None
    where = "--address" if args.address else "$RAY_ADDRESS"
    if args.device != "cpu":
        raise UserError(f"--device {args.device}: the runs go to the Ray cluster at {address} ({where}), where they "
                        "take GPUs with --gpus-per-trial")
    from ..search.remote import RemoteRuns

    remote = RemoteRuns(address, args.cpus_per_trial, args.gpus_per_trial)
    remote.connect()
    print(f"the runs train as Ray tasks on the cluster at {address} ({where}), {args.cpus_per_trial:g} CPU(s) and "
          f"{args.gpus_per_trial:g} GPU(s) each")
    return remote
