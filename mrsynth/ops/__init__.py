"""Native kernels: the CUDA group-roll kernels of ``cuda/`` through CuPy (imported lazily, so the package runs
without it), the fused CPU routing stem (``cpu_stem``, compiled on first use), and the DCNv2 deformable
convolution (``deform_conv``: torchvision's where it loads, else plain torch).

``mrsynth.models.roll.rolled_kernel`` dispatches here for CUDA tensors (``MRSYNTH_ROLL_BACKEND=auto|cuda``) and
``mrsynth.models.cagr.RoutingFunction`` for CPU inference (``MRSYNTH_CPU_KERNELS=auto|on|off``, ``stem_dispatch``);
the torch implementations next to them stay the references the kernels are tested against. Ops import nothing from
the model layer: tensors and modules in, tensors out (a test checks it).
"""

from __future__ import annotations

import torch
from torch import Tensor

CUDA_ROLL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""The weight dtypes the CUDA roll kernel has a form for; float64 stays with the torch reference."""


def cuda_roll_status() -> tuple[bool, str]:
    """(usable, detail): whether the kernels can run here, and why not (or which CuPy and sources) for reports."""
    from mrsynth.ops.cupy_roll import availability

    return availability()


def cpu_stem_report() -> dict:
    """What ``mrsynth info`` says about the fused CPU routing stem: usable, why (or which build), the
    ``MRSYNTH_CPU_KERNELS`` switch, the kernel's ISA tiles, and the forms chosen per layer shape on this CPU."""
    from mrsynth.ops import cpu_stem, stem_dispatch

    usable, detail = cpu_stem.status()
    kernel = cpu_stem.active_kernel() if usable else None
    return {
        "usable": usable, "detail": detail, "switch": cpu_stem.switch(),
        "isa": kernel.isa if kernel else None, "choices": stem_dispatch.recorded_choices() if kernel else {},
    }


def deform_conv_status() -> tuple[bool, str]:
    """(usable, detail): whether torchvision's fused deformable convolution runs here, and why not."""
    from mrsynth.ops.deform_conv import torchvision_status

    return torchvision_status()


def cuda_roll_available() -> bool:
    """Whether the CuPy group-roll kernel can run here (CuPy importable, a CUDA device, the sources found)."""
    return cuda_roll_status()[0]


def rolled_kernel_cuda(weight: Tensor, offsets: Tensor, scale: Tensor) -> Tensor:
    """Eq. 4 with the CUDA kernels, differentiable in weight, offsets and scale; see ``mrsynth.ops.cupy_roll``."""
    from mrsynth.ops.cupy_roll import rolled_kernel_cuda as run

    return run(weight, offsets, scale)


__all__ = ["CUDA_ROLL_DTYPES", "cpu_stem_report", "cuda_roll_available", "cuda_roll_status", "deform_conv_status",
           "rolled_kernel_cuda"]
