"""Run a benchmark once per instruction-set setting, each in a fresh process, and name the results after it.

Why a process per setting: oneDNN reads ``ONEDNN_MAX_CPU_ISA`` and ATen ``ATEN_CPU_CAPABILITY`` once, when they
first run, so an AVX-512 machine can only measure what AVX2 machines get (oneDNN's AVX2 convolutions, ATen's AVX2
LayerNorm, GELU and element-wise kernels, the fused stem built for ``-march=x86-64-v3`` with AVX2's tiles) in a
process started with all three settings. Each child also gets an empty kernel cache, so
``MRSYNTH_CPU_KERNELS=auto`` times its choices afresh under the conditions of this run.

Used by cagr_overhead.py and synthesis_flop_rate.py: ``--isa native|avx2|both`` (default both); the native
setting's figures keep their names, the AVX2 setting's get the suffix ``_avx2``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

SETTINGS = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MRSYNTH_CPU_ISA": "avx2"},
}
CHILD_FLAG = "--isa-child"
KERNEL_SWITCH = "MRSYNTH_CPU_KERNELS"


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--isa`` for the user, and the flag that marks the per-setting child process."""
    parser.add_argument("--isa", choices=("native", "avx2", "both"), default="both",
                        help="measure with this machine's own ISA, as an AVX2 machine (oneDNN capped at AVX2, kernel "
                             "built for -march=x86-64-v3), or both in turn (default)")
    parser.add_argument(CHILD_FLAG, action="store_true", help=argparse.SUPPRESS)


def chosen(isa: str) -> list[str]:
    """The settings ``--isa`` names that this CPU can run (AVX2 needs an x86-64 CPU with AVX2 and FMA)."""
    from mrsynth.ops import cpu_isa

    names = ["native", "avx2"] if isa == "both" else [isa]
    runnable = [name for name in names if name == "native" or not isinstance(cpu_isa.march_flags(name), str)]
    for name in sorted(set(names) - set(runnable)):
        print(f"note: skipping the {name} setting: {cpu_isa.march_flags(name)}", file=sys.stderr)
    return runnable


def run_child(script: str, argv: list[str], setting: str) -> dict:
    """Run ``script argv`` as the child for ``setting`` and return the JSON object its last stdout line holds."""
    with tempfile.TemporaryDirectory(prefix="mrsynth-bench-kernels-") as cache:
        env = {**os.environ, **SETTINGS[setting], "MRSYNTH_KERNEL_CACHE": cache}
        env.pop(KERNEL_SWITCH, None)  # the child sets it per measurement
        done = subprocess.run([sys.executable, script, *argv, CHILD_FLAG], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {setting} measurement failed (exit code {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_settings(script: str, argv: list[str], isa: str) -> dict[str, dict]:
    """Each setting ``--isa`` names, measured by ``script`` in its own child process: {setting: figures}."""
    return {setting: run_child(script, argv, setting) for setting in chosen(isa)}


def json_line(results: dict[str, dict], **extra: object) -> str:
    """One JSON line: every setting's figures (``suffixed``), then ``extra`` (threads, repeats, versions)."""
    line: dict = {}
    for setting, figures in results.items():
        line.update(suffixed(setting, figures))
    line.update(extra)
    return json.dumps(line)


def finish(script: str, args: argparse.Namespace, measure: Callable[[argparse.Namespace], dict],
           report: Callable[[dict[str, dict], argparse.Namespace], None], **extra: object) -> None:
    """What both benchmarks do once their options are parsed: as the per-setting child, measure and print the
    figures as JSON; as the parent, run one child per ``--isa`` setting, then print one JSON line (``--json``; with
    threads, repeats, the torch version and ``extra``) or the benchmark's own ``report``."""
    if args.isa_child:
        print(json.dumps(measure(args)))
        return
    results = run_settings(script, sys.argv[1:], args.isa)
    if args.json:
        import torch

        print(json_line(results, threads=args.threads, repeats=args.repeats, torch=torch.__version__, **extra))
        return
    report(results, args)


def suffixed(setting: str, figures: dict) -> dict:
    """The native setting's figures under their own names, the others' with ``_<setting>`` appended."""
    return dict(figures) if setting == "native" else {f"{key}_{setting}": value for key, value in figures.items()}


@contextlib.contextmanager
def kernels(value: str) -> Iterator[None]:
    """Run the block with ``MRSYNTH_CPU_KERNELS=value`` (the stem reads it at every call)."""
    saved = os.environ.get(KERNEL_SWITCH)
    os.environ[KERNEL_SWITCH] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(KERNEL_SWITCH, None)
        else:
            os.environ[KERNEL_SWITCH] = saved


def machine_line() -> dict:
    """What the figures were measured on: CPU model, the kernel build, oneDNN's cap and ATen's kernels."""
    import torch

    from mrsynth.ops import cpu_isa, cpu_stem

    kernel = cpu_stem.active_kernel()
    return {"cpu": cpu_isa.cpu_signature().split(" | ")[1], "kernel_isa": kernel.isa,
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}
