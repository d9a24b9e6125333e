"""Process-level CPU settings that make inference and training faster without changing any result.

Why the allocator: every layer of a 2-D network at 256x256 allocates and frees feature maps of several MB. glibc
hands such blocks back to the kernel on free (mmap/munmap, heap trimming), so the next layer page-faults its fresh
output in again: 4 KiB at a time, each fault zeroing a page. For AGI-Net's routing function (conv, LayerNorm, GELU,
conv, ... at full resolution) that doubled its cost on a 2-core CPU. Raising the mmap and trim thresholds keeps
freed blocks in the process for reuse. The price is that the process keeps its peak memory until it exits, which
suits a command-line run; library users opt in by calling :func:`tune_cpu_allocator` themselves.
"""

from __future__ import annotations

import ctypes
import functools
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed large blocks for reuse (glibc only; elsewhere a no-op). Returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
