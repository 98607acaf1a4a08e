"""Export a genotype as YAML, a standalone .py module, TorchScript or ONNX."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from pathlib import Path
from typing import Sequence

import torch

from ..compile import build_neck
from ..dsl import Genotype, to_yaml
from ..errors import NasfpnError
from ..files import FileProblem, atomic_output, output_file, write_text
from .standalone import check_class_name, write_standalone

FORMATS = ("yaml", "py", "torchscript", "onnx")


class ExportError(NasfpnError):
    """An export that cannot be done here (e.g. ONNX without its optional packages)."""


def export(g: Genotype, fmt: str, out: str | Path, in_channels: Sequence[int], out_channels: int | None = None,
           image_size: int = 640, class_name: str = "ExportedNeck") -> Path:
    """Write `g` as `fmt` to `out` (written whole or not at all)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    try:
        out = output_file(out)
        check_class_name(class_name)
    except (FileProblem, ValueError) as err:
        raise ExportError(str(err)) from None
    if fmt == "yaml":
        return write_text(out, to_yaml(g))
    if fmt == "py":
        with torch.device("meta"):  # the widths must build; the file is written from the plan
            build_neck(g, in_channels, out_channels)
        return write_standalone(g, in_channels, out, out_channels, class_name)
    neck = build_neck(g, in_channels, out_channels).eval()
    if fmt == "torchscript":
        with warnings.catch_warnings(), atomic_output(out) as tmp:
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(neck.graph), str(tmp))
        return out
    if fmt == "onnx":
        try:
            import onnxscript  # noqa: F401  - the torch.export-based exporter needs it
        except ImportError:
            raise ExportError("ONNX export needs the optional packages: pip install 'nasfpn[onnx]'") from None
        sizes = [math.ceil(image_size / 2 ** lv) for lv in g.levels[: len(in_channels)]]
        example = ([torch.zeros(1, c, s, s) for c, s in zip(in_channels, sizes)],)
        onnx_log = logging.getLogger("torch.onnx")
        level = onnx_log.level
        onnx_log.setLevel(logging.ERROR)  # it warns that torchvision's ops are not registered
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), atomic_output(out) as tmp:
                warnings.simplefilter("ignore")
                torch.onnx.export(neck.graph, example, str(tmp), dynamo=True,
                                  input_names=[f"c{lv}" for lv in g.levels[: len(in_channels)]],
                                  output_names=[f"p{lv}" for lv in g.levels])
        finally:
            onnx_log.setLevel(level)
    return out
