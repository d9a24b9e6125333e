"""Fused kernel or PyTorch for each routing-stem shape: whichever is faster on this machine, timed once and cached.

Why: how the fused kernel compares with oneDNN's grouped convolution plus PyTorch's LayerNorm and GELU depends on
the CPU (vector width, register count, caches), the thread count and the layer's shape; a kernel that wins on one
machine lost 1.6x on another. So with ``MRSYNTH_CPU_KERNELS=auto`` (the default) the first inference of each stem
shape times both forms on its own input, a few alternating calls, and keeps the faster one: the fused path is
never the slower choice where it was measured. The choice is cached next to the compiled kernel (same directory,
same key, so a new kernel is timed afresh), under a CPU signature (model, features, kernel ISA, thread count) and
the shape, so a later process skips the timing, and a cache shared by several machines keeps their choices apart.
``on`` and ``off`` force one form without timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from mrsynth.ops import cpu_isa
from mrsynth.ops.cpu_stem import Kernel, active_kernel, fused_stem_features, switch

TIMED_ROUNDS = 3
# Images of a batch that are timed: enough for 256x256 pixels, so one call of either form takes milliseconds to
# tens of milliseconds at any batch size and the whole timing stays well under a second per shape.
TIMED_PIXELS = 256 * 256

_LOCK = threading.Lock()
_MEMORY: dict[Path, dict] = {}  # choices file -> its content, read once per process


def torch_stem_features(stem: nn.Sequential, x: Tensor) -> Tensor:
    """The PyTorch form, ``stem(x)`` then the global average pool: the reference the kernel is checked against."""
    return stem(x).mean(dim=(2, 3))


def timed_batch(x: Tensor) -> int:
    """How many images of ``x`` the timing runs on (the whole batch when its images are small)."""
    height, width = x.shape[-2:]
    return min(x.shape[0], max(1, -(-TIMED_PIXELS // (height * width))))


def shape_key(stem: nn.Sequential, x: Tensor) -> str:
    """The timed shape: images x channels x height x width, channels per group, layers (e.g. ``1x64x256x256/8/2``)."""
    conv = stem[0]
    channels, height, width = x.shape[1:]
    return f"{timed_batch(x)}x{channels}x{height}x{width}/{channels // conv.groups}/{len(stem) // 3}"


def signature_key(kernel: Kernel, threads: int) -> str:
    """A short hash of what a timing depends on besides the shape: CPU, kernel ISA, thread count."""
    text = f"{cpu_isa.cpu_signature()} | kernel {kernel.isa} | threads {threads}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def choices_file(kernel: Kernel) -> Path:
    """Where choices made with ``kernel`` are kept: beside the library, under the same key."""
    return kernel.path.with_suffix(".choices.json")


def time_forms(
    forms: dict[str, Callable[[], object]], rounds: int = TIMED_ROUNDS, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Each form's best time in seconds over ``rounds`` alternating calls, after one untimed call each (first-call
    costs: oneDNN's kernel selection, page faults on fresh buffers). Alternating spreads the load of a shared
    machine over both; the minimum is each form's speed with the least interference."""
    for run in forms.values():
        run()
    best = dict.fromkeys(forms, float("inf"))
    for _ in range(rounds):
        for name, run in forms.items():
            start = clock()
            run()
            best[name] = min(best[name], clock() - start)
    return best


def _stored(path: Path) -> dict:
    if path not in _MEMORY:
        try:
            _MEMORY[path] = json.loads(path.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: time again and rewrite it
            _MEMORY[path] = {}
    return _MEMORY[path]


def _store(path: Path, signature: str, shape: str, entry: dict) -> None:
    """Record one choice, merged with what other processes wrote meanwhile; written whole and renamed into place."""
    try:
        on_disk = json.loads(path.read_text())
    except (OSError, ValueError):
        on_disk = {}
    for sig, shapes in _stored(path).items():
        on_disk.setdefault(sig, {}).update(shapes)
    on_disk.setdefault(signature, {})[shape] = entry
    _MEMORY[path] = on_disk
    try:
        handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".json.part")
    except OSError:  # a read-only cache: the choice still holds for this process
        return
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(on_disk, out, indent=1, sort_keys=True)
        os.replace(partial, path)
    except OSError:
        pass  # as above: kept in memory only
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def choose(stem: nn.Sequential, x: Tensor, kernel: Kernel) -> str:
    """The form for this stem and input under ``auto``: the cached choice, or time both now and cache the result."""
    path, shape = choices_file(kernel), shape_key(stem, x)
    signature = signature_key(kernel, torch.get_num_threads())
    with _LOCK:
        entry = _stored(path).get(signature, {}).get(shape)
        if entry is not None:
            return entry["form"]
        sample = x[: timed_batch(x)]
        times = time_forms({
            "fused": lambda: fused_stem_features(stem, sample, kernel),
            "torch": lambda: torch_stem_features(stem, sample),
        })
        form = "fused" if times["fused"] < times["torch"] else "torch"
        _store(path, signature, shape, {
            "form": form, "fused_ms": round(times["fused"] * 1e3, 3), "torch_ms": round(times["torch"] * 1e3, 3),
        })
    return form


def stem_features(stem: nn.Sequential, x: Tensor) -> Tensor:
    """``stem(x).mean(dim=(2, 3))`` by the form ``MRSYNTH_CPU_KERNELS`` and the timings choose; the caller has
    checked ``cpu_stem.applies`` (so the switch is not ``off`` and the kernel is loaded)."""
    kernel = active_kernel()
    if switch() == "on" or choose(stem, x, kernel) == "fused":
        return fused_stem_features(stem, x, kernel)
    return torch_stem_features(stem, x)


def recorded_choices() -> dict[str, dict]:
    """This machine's cached choices (shape -> form and both times in ms) for the active kernel and torch's thread
    count, for ``mrsynth info``; empty before the first timing or without a kernel."""
    kernel = active_kernel()
    if kernel.path is None:
        return {}
    with _LOCK:
        return dict(_stored(choices_file(kernel)).get(signature_key(kernel, torch.get_num_threads()), {}))
