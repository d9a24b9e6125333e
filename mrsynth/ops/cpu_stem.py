"""CAGR's routing stem as one fused CPU kernel (``routing_stem.c``), compiled on first use and loaded with ctypes.

Why compile at run time: the kernel is a page of C that GCC builds in about a second for the machine it runs on,
so wheels stay pure Python and nobody needs a build step; where no compiler is found the stem runs in PyTorch as
before. The instruction set is ``-march=native`` unless ``MRSYNTH_CPU_ISA`` names another (``cpu_isa``); the
kernel's tile shape follows from it. The shared library is cached under ``$MRSYNTH_KERNEL_CACHE`` (default
``~/.cache/mrsynth/kernels``), keyed by the source, the flags, the compiler and the CPU, written to a temporary
file and renamed into place so concurrent first runs cannot load a half-written file.

Why OpenMP through ctypes works well with torch: the library asks for ``libgomp.so.1``, which torch (linked against
the same soname) has already loaded, so the kernel runs on torch's own thread pool instead of competing with it.

Inference only: the fused layer has no backward, so anything that needs gradients keeps the PyTorch stem.
``MRSYNTH_CPU_KERNELS`` chooses between the two forms where the kernel applies: ``auto`` (default) times both once
per layer shape and keeps the faster (``stem_dispatch``), ``on`` always runs the kernel, ``off`` never.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import dataclasses
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor, nn

from mrsynth.errors import InputError
from mrsynth.ops import cpu_isa
from mrsynth.ops.flags import switched_on

SOURCE = Path(__file__).with_name("routing_stem.c")
CACHE_ENV = "MRSYNTH_KERNEL_CACHE"
SWITCH_ENV = "MRSYNTH_CPU_KERNELS"
# No -ffast-math: GCC links crtfastmath into shared objects with it, which flushes denormals for the whole
# process. These flags allow just what the vectorised reductions need.
CFLAGS = (
    "-O3", "-fopenmp", "-fPIC", "-shared",
    "-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros", "-fassociative-math",
)
SWITCHES = ("auto", "on", "off")
SUPPORTED_GROUP_WIDTHS = (1, 2, 4, 8)  # and any multiple of 16

_LOCK = threading.Lock()
# Per thread (and asyncio task): suspending the kernel for a FLOP count must not slow another thread's inference.
_SUSPENDED: contextvars.ContextVar[bool] = contextvars.ContextVar("mrsynth_cpu_stem_suspended", default=False)


def suspended() -> contextlib.AbstractContextManager[None]:
    """Run the PyTorch stem inside the block, e.g. so that torch's FLOP counter sees its convolutions."""
    return switched_on(_SUSPENDED)


def cache_dir() -> Path:
    """Where compiled kernels are kept."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mrsynth" / "kernels"


def compiler() -> str | None:
    """``$CC``, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def _build(cc: str, flags: tuple[str, ...]) -> Path:
    """Compile the kernel into the cache (once per source, flags, compiler and CPU) and return the library."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False, timeout=60).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), *CFLAGS, *flags, cc, version, cpu_isa.cpu_signature()]).encode()
    ).hexdigest()
    target = cache_dir() / f"routing_stem-{key[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.part")
    os.close(handle)
    try:
        done = subprocess.run(
            [cc, *CFLAGS, *flags, str(SOURCE), "-o", partial, "-lm"], capture_output=True, text=True, timeout=300
        )
        if done.returncode:
            last_line = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise RuntimeError(f"{Path(cc).name} failed: {last_line}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A loaded build: the library (None where it could not be had), its file, the tile variant it was compiled
    with (``avx512``, ``avx2`` or ``portable``, as the C source reports it) and a line for ``mrsynth info``."""

    library: ctypes.CDLL | None
    path: Path | None
    isa: str | None
    detail: str


@functools.lru_cache(maxsize=None)
def load(isa: str = "native") -> Kernel:
    """Build (or find in the cache) and load the kernel for ``isa``, one of ``cpu_isa.ISAS``."""
    if not SOURCE.is_file():
        return Kernel(None, None, None, f"{SOURCE.name} is missing from the installation")
    flags = cpu_isa.march_flags(isa)
    if isinstance(flags, str):
        return Kernel(None, None, None, flags)
    cc = compiler()
    if cc is None:
        return Kernel(None, None, None, "no C compiler (cc, gcc or clang) on PATH; set CC")
    try:
        with _LOCK:
            path = _build(cc, flags)
            library = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return Kernel(None, None, None, f"could not build the kernel: {error}")
    function = library.routing_stem_layer
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    function.argtypes = [pointer, *[integer] * 5, *[pointer] * 4, ctypes.c_float, pointer, pointer, integer]
    function.restype = integer
    library.routing_stem_isa.restype = ctypes.c_char_p
    built = library.routing_stem_isa().decode()
    return Kernel(library, path, built, f"{built} tiles ({' '.join(flags) or 'default target'}), built with "
                  f"{Path(cc).name} into {path}")


def switch() -> str:
    """``$MRSYNTH_CPU_KERNELS`` (``auto`` when unset); an unknown value is the user's error."""
    value = os.environ.get(SWITCH_ENV, "auto").strip().lower() or "auto"
    if value not in SWITCHES:
        raise InputError(SWITCH_ENV, f"unknown value {value!r}", f"choose one of {', '.join(SWITCHES)}")
    return value


def active_kernel() -> Kernel:
    """The build this process uses: the one ``MRSYNTH_CPU_ISA`` asks for."""
    return load(cpu_isa.requested_isa())


def status() -> tuple[bool, str]:
    """(usable, detail) for reports: whether the fused stem may run here, and why not."""
    if switch() == "off":
        return False, f"turned off by {SWITCH_ENV}=off"
    kernel = active_kernel()
    return kernel.library is not None, kernel.detail


def applies(stem: nn.Sequential, x: Tensor, norm_type: type[nn.Module]) -> bool:
    """Whether ``fused_stem_features`` can stand in for ``stem`` on ``x``: an inference-time float32 CPU call on
    [grouped 3x3 conv, ``norm_type``, exact GELU] layers whose group width the kernel has a form for.

    ``norm_type`` is the caller's per-pixel channel LayerNorm class (``weight``, ``bias``, ``eps`` over C): the
    caller names it so that ops import nothing from the model layer above them.
    """
    if _SUSPENDED.get() or x.is_cuda or x.dtype != torch.float32 or x.dim() != 4 or len(stem) % 3:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in stem.parameters())):
        return False
    for conv, norm, act in zip(stem[0::3], stem[1::3], stem[2::3]):
        if not (isinstance(conv, nn.Conv2d) and isinstance(act, nn.GELU) and act.approximate == "none"):
            return False
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.dilation != (1, 1):
            return False
        if not isinstance(norm, norm_type) or conv.in_channels != conv.out_channels or conv.out_channels % 8:
            return False
        width = conv.in_channels // conv.groups
        if width not in SUPPORTED_GROUP_WIDTHS and width % 16:
            return False
    return status()[0]


def pack_weight(conv: nn.Conv2d) -> Tensor:
    """(C, C/n, 3, 3) grouped weight -> [block][tap][k][lane], the kernel's layout (see ``routing_stem.c``)."""
    channels, width = conv.weight.shape[:2]
    lanes = 16 if width >= 16 else 8
    return conv.weight.detach().reshape(channels // lanes, lanes, width, 9).permute(0, 3, 2, 1).contiguous()


def _layer(library: ctypes.CDLL, x_nhwc: Tensor, conv: nn.Conv2d, norm: nn.Module, pooled: bool) -> Tensor:
    """One fused layer: (B, H, W, C) -> the next (B, H, W, C), or with ``pooled`` the (B, C) spatial means."""
    batch, height, width, channels = x_nhwc.shape
    packed = pack_weight(conv)
    # Bound to names so that every buffer whose address the kernel gets outlives the call.
    bias = conv.bias.detach().contiguous() if conv.bias is not None else x_nhwc.new_zeros(channels)
    scale, shift = norm.weight.detach().contiguous(), norm.bias.detach().contiguous()
    out = None if pooled else torch.empty_like(x_nhwc)
    row_sums = x_nhwc.new_empty(batch * height, channels) if pooled else None
    code = library.routing_stem_layer(
        x_nhwc.data_ptr(), batch, height, width, channels, channels // conv.groups, packed.data_ptr(),
        bias.data_ptr(), scale.data_ptr(), shift.data_ptr(), float(norm.eps),
        out.data_ptr() if out is not None else None, row_sums.data_ptr() if row_sums is not None else None,
        torch.get_num_threads(),
    )
    if code:
        raise MemoryError("routing stem kernel: no scratch memory")
    if pooled:
        return row_sums.view(batch, height, channels).sum(dim=1) / (height * width)
    return out


def fused_stem_features(stem: nn.Sequential, x: Tensor, kernel: Kernel | None = None) -> Tensor:
    """``stem(x).mean(dim=(2, 3))`` through the fused kernel (``kernel``, default the active build); check
    :func:`applies` first."""
    library = (kernel or active_kernel()).library
    # Named for torch.profiler, which does not see inside a ctypes call (benchmarks/cagr_breakdown.py reads it).
    with torch.profiler.record_function("mrsynth::fused_routing_stem"):
        hidden = x.permute(0, 2, 3, 1).contiguous()  # a free view when x is channels-last
        layers = list(zip(stem[0::3], stem[1::3]))
        for index, (conv, norm) in enumerate(layers):
            hidden = _layer(library, hidden, conv, norm, pooled=index == len(layers) - 1)
    return hidden
