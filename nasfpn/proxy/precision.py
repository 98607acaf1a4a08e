"""Numeric precision of a trial: `fp32`, `bf16` or `fp16` autocast of the forward pass, with what
must stay fp32 (losses, box decoding, NMS) cast back by the callers, and a GradScaler for fp16.

`auto` picks per device at run time: bf16 where the device computes it natively (a CPU with
AVX512-BF16 or AMX, a CUDA GPU from Ampere on), fp16 on older GPUs, fp32 on CPUs without
bf16 (said once). What a trial ran in is recorded in its metrics (`precision`).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..dsl.budget import PRECISIONS
from ..errors import NasfpnError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(NasfpnError, ValueError):
    """A precision the device cannot run (one line, exit 2)."""


@lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def _device_type(device: str) -> str:
    return torch.device(device).type


@dataclass(frozen=True)
class Precision:
    name: str          # fp32 | bf16 | fp16: what runs
    device_type: str   # cpu | cuda

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    def autocast(self):
        """The context the forward pass runs in (nothing for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        if self.device_type == "cpu":
            return _cpu_autocast(self.dtype)
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler: active for fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"note: {message}", file=sys.stderr)


def resolve(requested: str, device: str) -> Precision:
    """The precision a budget's `precision` runs at on `device`: fp16 on a CPU, and bf16 on a GPU
    before Ampere, raise PrecisionError; bf16 on a CPU without native bf16 falls back to fp32
    (said once)."""
    kind = _device_type(device)
    if requested not in PRECISIONS:
        raise PrecisionError(f"precision: unknown value '{requested}' (expected {' | '.join(PRECISIONS)})")
    if kind == "cuda":
        native = torch.cuda.get_device_capability(torch.device(device))[0] >= 8  # bf16 tensor cores: Ampere on
        if requested == "auto":
            requested = "bf16" if native else "fp16"
        if requested == "bf16" and not native:
            major, minor = torch.cuda.get_device_capability(torch.device(device))
            raise PrecisionError(f"precision: bf16 needs a GPU of compute capability 8.0 or later (Ampere on); "
                                 f"{device} is {major}.{minor}: use fp16 or fp32")
        return Precision(requested, kind)
    if kind != "cpu":
        return Precision("fp32" if requested == "auto" else requested, kind)
    if requested == "fp16":
        raise PrecisionError("precision: fp16 needs a CUDA device (--device cuda, --gpus-per-trial); on a CPU "
                             "use bf16 or fp32")
    if requested in ("auto", "bf16"):
        if cpu_has_bf16():  # 1.32x faster whole proxy trials, ranking kept: benchmarks/results/precision.md
            return Precision("bf16", kind)
        _note_once(f"precision {requested}: this CPU has no native bf16 (AVX512-BF16 or AMX): training in fp32")
        return Precision("fp32", kind)
    return Precision(requested, kind)


def _conv_in_fp32(x: torch.Tensor, weight: torch.Tensor, stride, groups) -> bool:
    """The convs bf16 autocast on a CPU must not take: a depthwise conv (bf16 measured slower:
    benchmarks/results/precision.md) and one whose stride exceeds its input map's width or
    height (a P6 -> P7 conv on a 1x1 map), whose bf16 weight gradient from oneDNN is garbage
    (NaN, 1e38) on torch 2.13. Both are cheap in fp32."""
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    depthwise = groups > 1 and weight.shape[1] == 1
    strided_past = weight.shape[-1] > 1 and (x.shape[-1] < stride[-1] or x.shape[-2] < stride[0])
    return depthwise or strided_past


class _SomeConvsInFp32(TorchFunctionMode):
    """Inside CPU bf16 autocast: the convs `_conv_in_fp32` names run in fp32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d and len(args) >= 2:
            stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
            groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
            if _conv_in_fp32(args[0], args[1], stride, groups):
                with torch.autocast("cpu", enabled=False):
                    floats = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
                    return func(*floats, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def _cpu_autocast(dtype: torch.dtype):
    with torch.autocast("cpu", dtype=dtype), _SomeConvsInFp32():
        yield
