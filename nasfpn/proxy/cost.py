"""Cost of a module: parameters, FLOPs, latency.

FLOPs come from torch.utils.flop_counter.FlopCounterMode (2 per multiply-add of convs and
matmuls) plus formulas for what it leaves out, so fusion-heavy necks are not under-counted:
resampling (nearest 1 per output element; bilinear as the arithmetic of its decomposition,
see `count_flops`), pooling (kernel area per output element; adaptive pools 1 per input
element), element-wise arithmetic and activations (1 per output element) and normalization
(2 per element).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _numel(shape) -> int:
    if isinstance(shape, (tuple, list)) and shape and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = shape[0]  # ops returning (values, indices)
    return math.prod(shape) if shape is not None else 0


def _per_output(k: int) -> Callable:
    def formula(*args, out_shape=None, **kwargs) -> int:
        return k * _numel(out_shape)
    return formula


def _pool(*args, out_shape=None, **kwargs) -> int:
    kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size", [1])
    kernel = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
    area = math.prod(kernel) if len(kernel) > 1 else kernel[0] ** 2
    return area * _numel(out_shape)


def _per_input(*args, out_shape=None, **kwargs) -> int:
    return _numel(args[0])


_FORMULAS_BY_PACKET = {
    aten.upsample_nearest2d: _per_output(1),
    aten._upsample_nearest_exact2d: _per_output(1),
    aten.upsample_bilinear2d: _per_output(7),
    aten.max_pool2d_with_indices: _pool,
    aten.max_pool2d: _pool,
    aten.avg_pool2d: _pool,
    aten._adaptive_avg_pool2d: _per_input,
    aten.adaptive_max_pool2d: _per_input,
    aten.mean: _per_input,
    aten.amax: _per_input,
    aten.sum: _per_input,
    aten.add: _per_output(1),
    aten.sub: _per_output(1),
    aten.mul: _per_output(1),
    aten.div: _per_output(1),
    aten.rsub: _per_output(1),
    aten.relu: _per_output(1),
    aten.silu: _per_output(1),
    aten.sigmoid: _per_output(1),
    aten._softmax: _per_output(3),
    aten._native_batch_norm_legit_no_training: _per_output(2),
    aten._native_batch_norm_legit: _per_output(2),
    aten.native_batch_norm: _per_output(2),
    aten.native_group_norm: _per_output(2),
}


# FlopCounterMode decomposes any overload it has no formula for before counting, so register
# every overload of each op, not only the packet.
_EXTRA_FORMULAS = {}
for _packet, _formula in _FORMULAS_BY_PACKET.items():
    _EXTRA_FORMULAS[_packet] = _formula
    for _name in _packet.overloads():
        _EXTRA_FORMULAS[getattr(_packet, _name)] = _formula


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def deterministic_cublas() -> None:
    """cuBLAS reproducible (its workspace fixed, as torch's deterministic mode asks): read when
    the process first calls cuBLAS, so set before a session trains on a GPU; a user's own value
    is kept."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def deterministic():
    """torch's deterministic algorithms (warn-only) inside the block, the caller's setting after."""
    deterministic_cublas()
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (run it under torch.no_grad, in eval mode, for inference cost).

    Counted in deterministic mode, where trials train: there torch decomposes bilinear
    upsampling into arithmetic before the counter sees it, elsewhere not, and a count must not
    depend on what the process ran before it."""
    with deterministic(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def module_flops(module: nn.Module, inputs: Sequence[torch.Tensor]) -> int:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return count_flops(lambda: module(list(inputs)))
    finally:
        module.train(was_training)


def latency_ms(fn: Callable[[], object], warmup: int = 3, runs: int = 20, threads: int | None = None,
               device: str = "cpu") -> float:
    """Median wall time of `fn` in milliseconds after warm-up, at a fixed thread count; on a CUDA
    `device` each run waits for the kernels it queued."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (lambda: None)
    try:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    finally:
        torch.set_num_threads(previous)
