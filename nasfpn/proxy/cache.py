"""Where the one-time work is kept between processes: generated data, backbone weights, features."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(path: str | Path | None = None) -> Path:
    """`path`, else $NASFPN_CACHE, else ~/.cache/nasfpn (created if missing)."""
    root = Path(path or os.environ.get("NASFPN_CACHE") or Path.home() / ".cache" / "nasfpn")
    root.mkdir(parents=True, exist_ok=True)
    return root
