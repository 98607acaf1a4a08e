"""Large arrays kept on disk and memory-mapped: generated images, frozen-backbone features.

An entry is a folder of `.npy` files and a `meta.json` that lists each file's shape, dtype,
size and CRC-32. It is built in a temporary folder and renamed into place, so no reader ever
sees half an entry; while one process builds it, the others on the machine wait on a lock file
and then open what it wrote (each entry is built once per machine, or once per cluster on
shared storage). Opening checks every file against `meta.json` (a truncated or overwritten
copy is reported in one line, removed and rebuilt) and maps it read-only: trials read the
rows they need, and the page cache shares them between processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..files import FileProblem
from .cache import discard

FORMAT = "nasfpn-arrays/1"
CHUNK = 16 << 20


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for the duration of the block."""
    try:
        handle = open(path, "a+b")
    except OSError as exc:  # a read-only or missing cache folder: one line, not a traceback
        raise FileProblem(path, f"cannot create the cache's lock file ({exc.strerror})") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            crc = zlib.crc32(block, crc)
    return crc


def _check(folder: Path) -> tuple[Optional[dict[str, np.ndarray]], str]:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        files = meta["files"]
        if meta.get("format") != FORMAT or not isinstance(files, dict):
            return None, f"is not a {FORMAT} entry"
    except (OSError, ValueError, KeyError, TypeError):
        return None, "has no readable meta.json (an interrupted build?)"
    arrays = {}
    for name, info in files.items():
        path = folder / f"{name}.npy"
        try:
            if not path.is_file() or path.stat().st_size != info["bytes"]:
                return None, f"has {path.name} of the wrong size (truncated?)"
            if _crc(path) != info["crc32"]:
                return None, f"has {path.name} that does not match its checksum (damaged)"
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"has {path.name} that does not load ({exc})"
        if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
            return None, f"has {path.name} of another shape than meta.json says"
        arrays[name] = array
    return arrays, ""


def open_arrays(folder: Path, what: str) -> Optional[dict[str, np.ndarray]]:
    """The entry's arrays (read-only memory maps), or None when it is missing or damaged."""
    if not folder.exists():
        return None
    arrays, reason = _check(folder)
    if arrays is None:
        discard(folder, what, reason)
    return arrays


class ArrayWriter:
    """Hands out writable memory-mapped `.npy` files of a new entry (see `cached_arrays`)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: list[str] = []

    def create(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        self.names.append(name)
        return np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def save(self, name: str, array: np.ndarray) -> None:
        self.names.append(name)
        np.save(self.folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def cached_arrays(folder: Path, what: str, build: Callable[[ArrayWriter], None]) -> dict[str, np.ndarray]:
    """Open the entry at `folder`, building it first (under its lock) when it is missing or damaged."""
    found = open_arrays(folder, what)
    if found is not None:
        return found
    with locked(folder.with_name(folder.name + ".lock")):
        found = open_arrays(folder, what)  # another process may have built it while we waited
        if found is not None:
            return found
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            writer = ArrayWriter(tmp)
            build(writer)
            files = {}
            for name in writer.names:
                path = tmp / f"{name}.npy"
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                files[name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                               "bytes": path.stat().st_size, "crc32": _crc(path)}
                del array
            (tmp / "meta.json").write_text(json.dumps({"format": FORMAT, "files": files}, indent=1))
            for path in tmp.iterdir():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    found = open_arrays(folder, what)
    if found is None:
        raise OSError(f"{folder}: the cached {what} just written does not read back")
    return found
