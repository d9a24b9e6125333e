"""GPU backends (CuPy kernels from ``cuda/``), imported lazily so that the package runs without CuPy."""

from __future__ import annotations

from torch import Tensor


def cuda_roll_available() -> bool:
    """Whether the CuPy group-roll kernel can run here (CuPy importable and a CUDA device present)."""
    return False


def rolled_kernel_cuda(weight: Tensor, offsets: Tensor, scale: Tensor) -> Tensor:
    raise RuntimeError("the CUDA roll kernel is not available in this build")
