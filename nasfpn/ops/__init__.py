"""The op registry and its entries: importing this package registers every op (and declares its
DSL word), so it is imported by `nasfpn/__init__.py` before anything parses a file."""

from . import blocks, fuse, post, resample
from .registry import Op, Site, entries, get, register

__all__ = ["Op", "Site", "blocks", "entries", "fuse", "get", "post", "register", "resample"]
