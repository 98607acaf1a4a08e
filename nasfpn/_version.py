"""The package version and the versions of what a result depends on, recorded with every run."""

from __future__ import annotations

import platform
from importlib import metadata

__version__ = "0.1.0"

RECORDED = ("torch", "numpy", "ray", "optuna", "pandas", "faster-coco-eval", "pycocotools")


def versions() -> dict[str, str]:
    """Python, nasfpn, and each recorded distribution that is installed (read from the package
    metadata: nothing is imported)."""
    out = {"python": platform.python_version(), "nasfpn": __version__}
    for name in RECORDED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
