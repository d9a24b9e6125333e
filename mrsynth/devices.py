"""One reading of ``--device`` for every command: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked against the machine."""

from __future__ import annotations

from typing import Any

from mrsynth.errors import InputError


def resolve_device(device: str, local_rank: int | None = None) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA device that is not there is a user error.

    ``local_rank`` (set under torchrun) turns a bare ``cuda`` into this rank's own GPU, ``cuda:LOCAL_RANK``.
    """
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError("--device", f"{device} requested but no CUDA device is available", "use --device cpu")
        if device == "cuda" and local_rank is not None:
            device = f"cuda:{local_rank}"
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise InputError("--device", f"{device} does not exist ({torch.cuda.device_count()} CUDA device(s))",
                             "choose an index below the device count")
        return device
    raise InputError("--device", f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")


def cpu_has_fast_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively here (AVX512-BF16 or AMX; ``ONEDNN_MAX_CPU_ISA`` counts).

    Why it matters: elsewhere bfloat16 is emulated, and a training step of the tiny ResUnet or AGI-Net measured
    8-13x slower than float32 under ``ONEDNN_MAX_CPU_ISA=AVX2`` (1.4-1.9x faster with AVX512-BF16;
    benchmarks/train_step_precision.py), so CPU ``--amp`` autocasts only where this is true.
    """
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def autocast_dtype(device_type: str) -> Any:
    """What ``--amp`` autocasts to on a device of this type: float16 on CUDA (with loss scaling), bfloat16 on a CPU
    that runs it natively, else None (train in float32): the one place that decides, for the trainer and the CLI."""
    import torch

    if device_type == "cuda":
        return torch.float16
    if device_type == "cpu" and cpu_has_fast_bfloat16():
        return torch.bfloat16
    return None
