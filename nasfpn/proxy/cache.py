"""Where the one-time work is kept between processes: generated data, backbone weights, features.

Tensor caches are weights-only torch files that carry a SHA-256 of their tensors; one that does
not load, or whose tensors no longer match their digest (a truncated copy, bytes overwritten),
is reported in one line, removed and rebuilt: never read as garbage. Every cache file is
written under a temporary name and moved into place, so a killed run leaves none half-written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch

from ..files import FileProblem, atomic_output, check_regular, output_dir

FORMAT = "nasfpn-cache/1"
T = TypeVar("T")


def cache_dir(path: str | Path | None = None) -> Path:
    """`path`, else $NASFPN_CACHE, else ~/.cache/nasfpn (created if missing)."""
    if path:
        return output_dir(path, "--cache")
    if os.environ.get("NASFPN_CACHE"):
        return output_dir(os.environ["NASFPN_CACHE"], "$NASFPN_CACHE")
    return output_dir(Path.home() / ".cache" / "nasfpn")


def tensor_digest(obj: Any) -> str:
    """SHA-256 of every tensor in a nest of dicts, lists and tuples (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()

    def feed(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{where}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else b"")
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                feed(value[key], f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                feed(item, f"{where}[{i}]")
        else:
            digest.update(f"{where}={value!r}|".encode())

    feed(obj, "")
    return digest.hexdigest()


def save_checked(path: Path, payload: Any) -> None:
    with atomic_output(path) as tmp:
        torch.save({"format": FORMAT, "sha256": tensor_digest(payload), "payload": payload}, tmp)


def discard(path: Path, what: str, reason: str) -> None:
    """Report a damaged cache file (or folder) in one line and remove it, so that it is rebuilt."""
    print(f"warning: {path}: the cached {what} {reason}; removed, rebuilding it", file=sys.stderr)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_cache(path: Path, what: str, load: Callable[[Path], T],
               problem: Callable[[T], Optional[str]]) -> Optional[T]:
    """`load(path)`, or None when there is no such file or it is damaged: it does not load, or
    `problem` finds something wrong with what it holds (then it is reported and removed)."""
    if not path.exists():
        return None
    try:
        check_regular(path)
        loaded = load(path)
    except FileProblem as err:
        discard(path, what, err.reason)
        return None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails its reader in many ways
        discard(path, what, f"does not load ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return None
    wrong = problem(loaded)
    if wrong:
        discard(path, what, wrong)
        return None
    return loaded


def _envelope_problem(saved: Any) -> Optional[str]:
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or "payload" not in saved:
        return f"is not a {FORMAT} file"
    if tensor_digest(saved["payload"]) != saved.get("sha256"):
        return "does not match its checksum (damaged)"
    return None


def load_checked(path: Path, what: str) -> Optional[Any]:
    """The payload saved by `save_checked`, or None when there is none or it is damaged."""
    saved = read_cache(path, what, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                       _envelope_problem)
    return None if saved is None else saved["payload"]
