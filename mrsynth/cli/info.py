"""``mrsynth info``: versions, devices, the active roll backend, the CPU kernel and cache locations, for bug reports."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import typer

from mrsynth.cli.common import emit_json, stderr_console, user_errors

PACKAGES = ("torch", "numpy", "SimpleITK", "nibabel", "isal", "safetensors", "huggingface_hub", "typer", "rich", "cupy")


def _version(package: str) -> str | None:
    for name in (package, f"{package}-cuda12x", f"{package}-cuda13x"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def collect_info() -> dict:
    import torch

    from mrsynth import __version__
    from mrsynth.models.roll import roll_backend
    from mrsynth.ops import cpu_stem_report, cuda_roll_status, deform_conv_status

    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    kernel, kernel_detail = cuda_roll_status()
    asked = roll_backend()
    active = "cuda" if kernel and asked != "torch" else "torch"
    fused_deform, deform_detail = deform_conv_status()
    try:
        from huggingface_hub import constants

        hub_cache = str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        hub_cache = None
    return {
        "mrsynth": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": devices,
        "roll_backend": {"requested": asked, "active_on_gpu": active, "cuda_kernel_usable": kernel,
                         "detail": kernel_detail},
        "cpu_stem_kernel": cpu_stem_report(),
        "deform_conv": {"torchvision": fused_deform, "detail": deform_detail},
        "hub_cache": hub_cache,
    }


@user_errors
def info_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON line on stdout.")) -> None:
    """Print versions, devices, whether the CUDA roll kernel and the fused CPU routing stem run, and cache locations.

    Example: mrsynth info --json | jq .roll_backend
    """
    info = collect_info()
    if as_json:
        emit_json(info)
        return
    from rich.table import Table

    table = Table(show_header=False, title=f"mrsynth {info['mrsynth']}")
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # paths wrap whole instead of ending in an ellipsis
    table.add_row("python", f"{info['python']} ({info['platform']})")
    for name, version in info["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    table.add_row("torch threads", str(info["torch_threads"]))
    table.add_row("CUDA devices", ", ".join(info["cuda_devices"]) or "none")
    rb = info["roll_backend"]
    table.add_row("roll backend", f"requested {rb['requested']}, on GPU: {rb['active_on_gpu']}, "
                  f"CUDA kernel usable: {'yes' if rb['cuda_kernel_usable'] else 'no'} ({rb['detail']})")
    stem = info["cpu_stem_kernel"]
    table.add_row("CPU routing stem", f"fused kernel: {'yes' if stem['usable'] else 'no'} ({stem['detail']}); "
                  f"MRSYNTH_CPU_KERNELS={stem['switch']}")
    if stem["choices"]:
        table.add_row("CPU stem choices", "; ".join(
            f"{shape}: {c['form']} (fused {c['fused_ms']:.2f} ms, PyTorch {c['torch_ms']:.2f} ms)"
            for shape, c in sorted(stem["choices"].items())))
    elif stem["usable"] and stem["switch"] == "auto":
        table.add_row("CPU stem choices", "none timed yet on this CPU and thread count (the first inference of "
                      "each layer shape times both forms)")
    deform = info["deform_conv"]
    table.add_row("deformable conv", f"{'torchvision' if deform['torchvision'] else 'plain torch'} ({deform['detail']})")
    table.add_row("Hub cache", str(info["hub_cache"]))
    stderr_console().print(table)
