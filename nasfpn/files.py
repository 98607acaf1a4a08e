"""Files in and out, safely, for every layer.

Inputs are read only when they are regular files: a FIFO, socket, device or directory is refused
at once (opening without blocking), and reads are bounded. Outputs are written to a temporary
name beside their place and moved into place, so an interrupted run never leaves a truncated
file that a later run would read; an existing directory where a file is wanted (or the
reverse) is one clear line.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator

from .errors import NasfpnError


class FileProblem(NasfpnError, ValueError):
    """A path that cannot be read or written as asked; the message names it."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        self.reason = message
        super().__init__(f"{path}: {message}")


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file"


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_regular(path: str | Path) -> Path:
    """`path` if it names an existing regular file (symlinks followed), else FileProblem."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise FileProblem(path, _not_regular(mode))
    return Path(path)


def read_bytes(path: str | Path, limit: int | None = None, limit_name: str = "") -> bytes:
    """The content of a regular file of at most `limit` bytes."""
    check_regular(path)  # then opened without blocking and checked again: it may have been swapped
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem(path, "no such file") from None
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FileProblem(path, _not_regular(info.st_mode))
    with os.fdopen(fd, "rb") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        named = f" ({limit_name})" if limit_name else ""
        raise FileProblem(path, f"is larger than the limit of {human_bytes(limit)}{named}")
    return data


def read_text(path: str | Path, limit: int | None = None, limit_name: str = "") -> str:
    data = read_bytes(path, limit, limit_name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(path, f"is not UTF-8 text (byte {exc.start})") from None


# ----------------------------------------------------------------------------- outputs
def output_file(path: str | Path, option: str = "") -> Path:
    """A path a file may be written to: not a directory, its folder created (not a file)."""
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise FileProblem(where, "is a directory (expected a file path)")
    if path.exists() and not path.is_file():
        raise FileProblem(where, _not_regular(os.stat(path).st_mode))
    output_dir(path.parent, option)
    return path


def output_dir(path: str | Path, option: str = "") -> Path:
    """A directory to write into, created with its parents; an existing file there is refused."""
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            detail = "is a file" if folder == path else f"lies under {folder}, which is a file"
            raise FileProblem(where, f"{detail} (expected a directory)")
        if folder.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileProblem(where, f"cannot create the directory: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; it replaces `path` only when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # on disk before it takes the name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
