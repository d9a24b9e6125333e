"""Which instruction set the fused CPU kernel is built for, and the CPU signature its caches are keyed by.

Why a choice at all: ``-march=native`` builds the widest form this CPU has (AVX-512 here, AVX2 on most laptops,
NEON on ARM), and that is the default. ``MRSYNTH_CPU_ISA=avx2`` builds for ``-march=x86-64-v3`` instead, so that an
AVX-512 machine can measure and test what AVX2 machines run; ``portable`` builds for the architecture's baseline
(SSE2 on x86-64, NEON on aarch64), the form every other CPU gets. The kernel reads the compiler's ISA macros and
picks its tile shape from them (``routing_stem.c``), so the ``-march`` flag alone selects the variant.
"""

from __future__ import annotations

import functools
import os
import platform

from mrsynth.errors import InputError

ISA_ENV = "MRSYNTH_CPU_ISA"
ISAS = ("native", "avx2", "portable")
# What -march=x86-64-v3 may use beyond x86-64-v2: running its code on a CPU without these would crash the process.
X86_64_V3_FLAGS = frozenset({"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"})


def requested_isa() -> str:
    """``$MRSYNTH_CPU_ISA`` (``native`` when unset); an unknown value is the user's error."""
    isa = os.environ.get(ISA_ENV, "native").strip().lower() or "native"
    if isa not in ISAS:
        raise InputError(ISA_ENV, f"unknown value {isa!r}", f"choose one of {', '.join(ISAS)}")
    return isa


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """The first processor's block of /proc/cpuinfo (all cores of a machine show the same model and features)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            return info.read().split("\n\n", 1)[0]
    except OSError:  # macOS, Windows, or a sandbox without /proc
        return ""


def _field(names: tuple[str, ...]) -> str:
    """The first value of the first /proc/cpuinfo field among ``names`` ("" when absent)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return ""


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``), empty where /proc/cpuinfo is not readable."""
    return frozenset(_field(("flags", "Features")).split())


@functools.lru_cache(maxsize=1)
def cpu_signature() -> str:
    """The CPU model and its features: what a build and a timing depend on, so that a cache shared by different
    machines (a home directory on a cluster) never hands one machine another's kernel or choices."""
    model = _field(("model name", "Processor", "CPU part")) or platform.processor()
    return f"{platform.machine()} | {model} | {' '.join(sorted(cpu_flags()))}"


def march_flags(isa: str) -> tuple[str, ...] | str:
    """The compiler flags that build ``isa`` on this machine, or a line saying why it cannot run here."""
    machine = platform.machine().lower()
    x86 = machine in ("x86_64", "amd64")
    if isa == "native":
        return ("-march=native",)
    if isa == "avx2":
        if not x86:
            return f"{ISA_ENV}=avx2 needs an x86-64 CPU, this is {machine}"
        missing = X86_64_V3_FLAGS - cpu_flags()
        if missing:
            return f"{ISA_ENV}=avx2: this CPU lacks {', '.join(sorted(missing))}"
        return ("-march=x86-64-v3",)
    if x86:
        return ("-march=x86-64",)
    if machine in ("aarch64", "arm64"):
        return ("-march=armv8-a",)
    return ()  # the compiler's own default target
