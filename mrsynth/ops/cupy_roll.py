"""The CUDA group-roll kernels (``cuda/group_roll.cu``) loaded with CuPy, wrapped as a ``torch.autograd.Function``.

Why CuPy and raw pointers: CuPy compiles the CUDA C source at run time with NVRTC (no build step, no compiler
on the user's machine), caches the binary per device and on disk, and launches it on any stream. Tensors stay
PyTorch's: the kernels receive ``data_ptr()`` values and run on PyTorch's current stream, so nothing is copied,
and float16 / bfloat16 work even where CuPy's DLPack has no bfloat16.

CuPy is imported inside the functions only: this module imports without it.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy
import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from mrsynth.ops.sources import CUDA_DIR_ENV, SOURCE_NAME, cuda_source_dir, prepared_source

# NVRTC options: C++17 is accepted by every NVRTC from CUDA 11 on; the source itself needs no header.
NVRTC_OPTIONS = ("--std=c++17",)
BLOCK = 256
MAX_GRID = 65535
MAX_ELEMENTS = 1 << 30  # the kernels index one sample's kernels with int; keep well clear of 2^31

# Storage type of the weight -> kernel name suffix. Offsets and lambdas always travel as float32.
SUFFIXES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


@functools.lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    """(usable, why not): whether this process can run the kernels, and a reason for ``mrsynth info`` if not."""
    if not torch.cuda.is_available():
        return False, "no CUDA device visible to torch"
    try:
        import cupy
    except Exception as error:  # ImportError, or a CUDA library mismatch raised while cupy loads
        return False, f"cupy not importable ({type(error).__name__}: {error}); pip install 'mrsynth[cuda]'"
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # cupy's CUDA runtime does not match the driver
        return False, f"cupy cannot reach the GPU ({type(error).__name__}: {error})"
    if devices < 1:
        return False, "cupy sees no CUDA device"
    if cuda_source_dir() is None:
        return False, f"{SOURCE_NAME} not found; set {CUDA_DIR_ENV}"
    return True, f"cupy {cupy.__version__}, sources in {cuda_source_dir()}"


# ---------------------------------------------------------------------------------------------------------------
# Compilation (once per device) and launch on PyTorch's stream.

_LOCK = threading.Lock()
_MODULES: dict[int, Any] = {}
_KERNELS: dict[tuple[int, str], Any] = {}


def kernel(device_index: int, name: str) -> Any:
    """The compiled kernel ``name`` for one device; the first call per device compiles the module (NVRTC)."""
    key = (device_index, name)
    function = _KERNELS.get(key)
    if function is not None:
        return function
    import cupy
    from cupy.cuda.compiler import CompileException

    with _LOCK, cupy.cuda.Device(device_index):
        module = _MODULES.get(device_index)
        if module is None:
            module = cupy.RawModule(code=prepared_source(), options=NVRTC_OPTIONS)
            _MODULES[device_index] = module
        try:
            function = module.get_function(name)
        except CompileException as error:
            raise RuntimeError(
                f"compiling {SOURCE_NAME} with NVRTC failed (MRSYNTH_ROLL_BACKEND=torch avoids the kernel):\n{error}"
            ) from error
        _KERNELS[key] = function
    return function


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _launch(name: str, device: torch.device, grid: tuple[int, int], args: tuple[Any, ...]) -> None:
    import cupy

    function = kernel(device.index, name)
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), cupy.cuda.ExternalStream(stream.cuda_stream, device.index):
        function((grid[0], grid[1], 1), (BLOCK, 1, 1), args)


def _pointer(tensor: Tensor | None) -> Any:
    return numpy.uint64(0 if tensor is None else tensor.data_ptr())


def _ints(*values: int) -> tuple[Any, ...]:
    return tuple(numpy.int32(v) for v in values)


def reduction_parts(per_group: int, groups_total: int, device_index: int) -> int:
    """How many blocks share one (sample, group) reduction: enough blocks to fill the GPU a few times over,
    but at least 2048 elements per block so the per-block fixed cost stays small."""
    fill = math.ceil(4 * _multiprocessors(device_index) / max(groups_total, 1))
    return max(1, min(math.ceil(per_group / (8 * BLOCK)), fill))


class GroupRollFunction(torch.autograd.Function):
    """Eq. 4 on the GPU: rolled kernels (B, C_out, C_in, k_h, k_w) from weight, offsets (B, n, 2), scale (B, n)."""

    @staticmethod
    def forward(ctx: FunctionCtx, weight: Tensor, offsets: Tensor, scale: Tensor) -> Tensor:
        c_out, c_in, k_h, k_w = weight.shape
        batch, groups, _ = offsets.shape
        weight = weight.contiguous()
        offsets32 = offsets.detach().to(torch.float32).contiguous()
        scale32 = scale.detach().to(torch.float32).contiguous()
        out = torch.empty((batch, c_out, c_in, k_h, k_w), dtype=weight.dtype, device=weight.device)
        per_sample = c_out * c_in * k_h * k_w
        if out.numel():
            grid = (min(math.ceil(per_sample / BLOCK), MAX_GRID), min(batch, MAX_GRID))
            args = (_pointer(weight), _pointer(offsets32), _pointer(scale32), _pointer(out))
            _launch(f"group_roll_forward_{SUFFIXES[weight.dtype]}", weight.device, grid,
                    args + _ints(batch, c_out, c_in, groups, k_h, k_w))
        ctx.save_for_backward(weight, offsets32, scale32)
        ctx.input_dtypes = (offsets.dtype, scale.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        weight, offsets32, scale32 = ctx.saved_tensors
        need_weight, need_offsets, need_scale = ctx.needs_input_grad
        c_out, c_in, k_h, k_w = weight.shape
        batch, groups, _ = offsets32.shape
        device = weight.device
        grad_out = grad_out.to(weight.dtype).contiguous()
        per_sample = c_out * c_in * k_h * k_w
        per_group = per_sample // groups

        weight_blocks = min(math.ceil(per_sample / BLOCK), MAX_GRID) if need_weight and per_sample else 0
        parts = reduction_parts(per_group, batch * groups, device.index) if (need_offsets or need_scale) else 0
        grad_weight = torch.empty_like(weight) if weight_blocks else None
        partials = torch.empty((batch, groups, parts, 3), dtype=torch.float32, device=device)
        if batch == 0 or per_sample == 0:  # nothing to sum: every gradient is zero
            weight_blocks, parts = 0, 0
            grad_weight = torch.zeros_like(weight) if need_weight else None
            partials = torch.zeros((batch, groups, 1, 3), dtype=torch.float32, device=device)
        blocks = weight_blocks + batch * groups * parts
        if blocks:
            args = (_pointer(weight), _pointer(offsets32), _pointer(scale32), _pointer(grad_out),
                    _pointer(grad_weight), _pointer(partials))
            _launch(f"group_roll_backward_{SUFFIXES[weight.dtype]}", device, (blocks, 1),
                    args + _ints(batch, c_out, c_in, groups, k_h, k_w, weight_blocks, parts))
        sums = partials.sum(dim=2)  # (B, n, 3): the parts' partial sums, added in a fixed order
        offsets_dtype, scale_dtype = ctx.input_dtypes
        grad_offsets = sums[..., :2].to(offsets_dtype) if need_offsets else None
        grad_scale = sums[..., 2].to(scale_dtype) if need_scale else None
        return grad_weight, grad_offsets, grad_scale


def check_inputs(weight: Tensor, offsets: Tensor, scale: Tensor) -> None:
    """Shapes, devices and sizes the kernels rely on; a ValueError names what is off."""
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_out, C_in, k_h, k_w), got shape {tuple(weight.shape)}")
    if offsets.dim() != 3 or offsets.shape[-1] != 2:
        raise ValueError(f"offsets must be (B, n, 2), got shape {tuple(offsets.shape)}")
    batch, groups, _ = offsets.shape
    if tuple(scale.shape) != (batch, groups):
        raise ValueError(f"scale must be (B, n) = {(batch, groups)}, got shape {tuple(scale.shape)}")
    c_out, c_in, k_h, k_w = weight.shape
    if groups < 1 or c_in % groups:
        raise ValueError(f"C_in={c_in} is not divisible into n={groups} groups")
    if not (weight.is_cuda and offsets.device == weight.device and scale.device == weight.device):
        raise ValueError(f"weight, offsets and scale must be on one CUDA device, got "
                         f"{weight.device}, {offsets.device}, {scale.device}")
    if c_out * c_in * k_h * k_w >= MAX_ELEMENTS or batch * groups >= MAX_ELEMENTS:
        raise ValueError(f"weight {tuple(weight.shape)} with batch {batch} is too large for the roll kernel")


def rolled_kernel_cuda(weight: Tensor, offsets: Tensor, scale: Tensor) -> Tensor:
    """Eq. 4 with the CUDA kernels for float32 / float16 / bfloat16 weights (float32 sums).

    float64 has no kernel: it is the precision of the torch reference, to which the caller's dispatch
    (``mrsynth.models.roll.rolled_kernel``) sends it.
    """
    if weight.dtype not in SUFFIXES:
        raise ValueError(f"no CUDA roll kernel for {weight.dtype}; use the torch reference")
    check_inputs(weight, offsets, scale)
    return GroupRollFunction.apply(weight, offsets, scale)
