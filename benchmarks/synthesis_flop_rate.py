"""Is volume synthesis compute-bound? Its FLOP rate against a plain Conv2d stack's, and the peak memory of a 256^3 volume.

Two figures of docs/performance.md (issue: "inference near the machine's limit"):

1. FLOP rate. The default model synthesizes the shipped 240x240x155 demo case end to end (read, resample, normalise,
   slice, model, reassemble, write). Its rate is (model FLOPs per slice x slices run) / wall time. The yardstick is
   a stack of plain 3x3 ``nn.Conv2d`` layers (64 channels, where oneDNN is efficient) with the same FLOPs per slice,
   run on the same slice size and batch size in the same process: what this machine reaches on pure convolution.
   Repeats alternate between the two so that load on the machine hits both alike.
2. Peak memory of synthesizing a 256x256x256 volume (random-structure T1/T2 written to a temporary folder), measured
   as the child process's peak resident set size (VmHWM).

Synthesis is timed once per MRSYNTH_CPU_KERNELS setting in each round (auto, the default; on; off), and each ISA
setting runs in its own process (benchmarks/isa_settings.py): ``native`` and ``avx2`` (oneDNN capped at AVX2, ATen's
AVX2 kernels, the kernel built for -march=x86-64-v3); the AVX2 setting's figures carry the suffix ``_avx2``.

    python benchmarks/synthesis_flop_rate.py [--model M] [--threads 2] [--repeats 3] [--isa native|avx2|both] [--json]
    python benchmarks/synthesis_flop_rate.py --quick --json   # 1 repeat, no 256^3 memory run
    python benchmarks/synthesis_flop_rate.py --quick --json --model agi-net-tiny-brats17-t1t2-flair

The default (t1, t2) -> flair model is a ResUnet, which has no routing stem; the AGI-Net of the same scenario shows
what the fused stem does to synthesis.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"
INPUTS = {"t1": DEMO / "TCGA-FG-6692-t1n.nii.gz", "t2": DEMO / "TCGA-FG-6692-t2w.nii.gz"}
YARDSTICK_WIDTH = 64


def conv_stack(flops_per_slice: float, size: tuple[int, int], in_channels: int):
    """3x3 convs at 64 channels whose FLOPs per slice match ``flops_per_slice`` (to within one layer's worth)."""
    import torch
    from torch import nn

    pixels = size[0] * size[1]
    first = 2 * in_channels * YARDSTICK_WIDTH * 9 * pixels
    per_layer = 2 * YARDSTICK_WIDTH * YARDSTICK_WIDTH * 9 * pixels
    layers = [nn.Conv2d(in_channels, YARDSTICK_WIDTH, 3, padding=1, bias=False)]
    layers += [nn.Conv2d(YARDSTICK_WIDTH, YARDSTICK_WIDTH, 3, padding=1, bias=False)
               for _ in range(max(0, round((flops_per_slice - first) / per_layer)))]
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def measure_rate(model_spec: str | None, repeats: int, switches: tuple[str, ...]) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from isa_settings import kernels
    from mrsynth.inference import Synthesizer
    from mrsynth.models.cagr import RoutingFunction
    from mrsynth.models.profile import count_flops

    synth = Synthesizer.from_spec(model_spec, inputs=["t1", "t2"], device="cpu")
    if not any(isinstance(module, RoutingFunction) for module in synth.model.modules()):
        switches = ("auto",)  # no CAGR routing stem (a ResUnet): the switch changes nothing, time it once
    slices_run: list[int] = []
    folder = Path(tempfile.mkdtemp(prefix="mrsynth-rate-"))

    def synthesize_once() -> None:
        out = folder / "out.nii.gz"
        synth(INPUTS, out, progress=lambda done, total: slices_run.append(total))
        out.unlink()

    size = tuple(synth.slice_size) if all(synth.slice_size) else (240, 240)
    probe = torch.rand(1, len(synth.inputs), *size)
    model_flops = count_flops(synth.model, probe)  # grouped convs counted as grouped, whatever form runs
    stack = conv_stack(model_flops, size, len(synth.inputs))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        stack(probe)
    stack_flops = counter.get_total_flops()
    batch = torch.rand(synth.batch_size, len(synth.inputs), *size)

    def stack_once(slices: int) -> None:
        with torch.inference_mode():
            for _ in range(0, slices, synth.batch_size):
                stack(batch)

    for switch in switches:  # warm-up; under auto, this is where the stem's forms are timed and chosen
        with kernels(switch):
            synthesize_once()
    slices = slices_run[-1]
    stack_once(synth.batch_size)
    synth_times: dict[str, list[float]] = {switch: [] for switch in switches}
    stack_times = []
    for _ in range(repeats):
        for switch in switches:
            with kernels(switch):
                start = time.perf_counter()
                synthesize_once()
                synth_times[switch].append(time.perf_counter() - start)
        start = time.perf_counter()
        stack_once(slices)
        stack_times.append(time.perf_counter() - start)
    batches = -(-slices // synth.batch_size)
    stack_rate = stack_flops * batches * synth.batch_size / statistics.median(stack_times)
    result = {
        "model": str(synth.checkpoint.name), "slice_size": list(size), "batch_size": synth.batch_size,
        "slices": slices, "model_gflops_per_slice": model_flops / 1e9, "stack_gflops_per_slice": stack_flops / 1e9,
        "stack_s": statistics.median(stack_times), "stack_gflop_per_s": stack_rate / 1e9,
    }
    for switch, times in synth_times.items():
        suffix = "" if switch == "auto" else f"_{switch}"
        synth_rate = model_flops * slices / statistics.median(times)
        result.update({
            f"synthesis_s{suffix}": statistics.median(times), f"synthesis_spread_s{suffix}": [min(times), max(times)],
            f"synthesis_gflop_per_s{suffix}": synth_rate / 1e9, f"rate_fraction{suffix}": synth_rate / stack_rate,
        })
    return result


def peak_memory_256(model_spec: str | None, threads: int) -> float:
    """Synthesize a 256^3 volume in a fresh process and return its peak resident memory in MB."""
    code = f"""
import sys, tempfile, numpy as np, SimpleITK as sitk, torch
from mrsynth.runtime import tune_cpu_allocator
tune_cpu_allocator(); torch.set_num_threads({threads})
from mrsynth.inference import Synthesizer
folder = tempfile.mkdtemp(prefix="mrsynth-mem-")
rng = np.random.default_rng(0)
z, y, x = np.mgrid[-1:1:256j, -1:1:256j, -1:1:256j]
head = (x**2 + y**2 + z**2 < 0.8).astype(np.float32)
paths = {{}}
for name, scale in (("t1", 600.0), ("t2", 900.0)):
    image = sitk.GetImageFromArray(head * (scale + 50 * rng.standard_normal(head.shape).astype(np.float32)))
    paths[name] = f"{{folder}}/{{name}}.nii.gz"
    sitk.WriteImage(image, paths[name])
synth = Synthesizer.from_spec({model_spec!r}, inputs=["t1", "t2"], device="cpu")
synth(paths, f"{{folder}}/out.nii.gz")
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """The child's work for one ISA setting."""
    import torch

    from isa_settings import machine_line
    from mrsynth.ops.stem_dispatch import recorded_choices
    from mrsynth.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    result = measure_rate(args.model, args.repeats, tuple(args.kernels.split(",")))
    if not args.quick:
        result["peak_mb_256cube"] = peak_memory_256(args.model, args.threads)
    return {**result, **machine_line(), "choices": recorded_choices()}


def print_result(setting: str, result: dict, threads: int) -> None:
    print(f"[{setting}: {result['cpu']}, kernel {result['kernel_isa']}, oneDNN {result['onednn_max_isa']}, "
          f"ATen {result['aten_cpu_capability']}] "
          f"model {result['model']}: {result['model_gflops_per_slice']:.2f} GFLOPs/slice at {result['slice_size']}, "
          f"batch {result['batch_size']}, {result['slices']} slices, {threads} threads")
    print(f"Conv2d stack ({result['stack_gflops_per_slice']:.2f} GFLOPs/slice): "
          f"{result['stack_gflop_per_s']:.1f} GFLOP/s")
    for switch in ("auto", "on", "off"):
        suffix = "" if switch == "auto" else f"_{switch}"
        if f"synthesis_s{suffix}" in result:
            print(f"MRSYNTH_CPU_KERNELS={switch}: {result[f'synthesis_s{suffix}']:.2f} s/volume -> "
                  f"{result[f'synthesis_gflop_per_s{suffix}']:.1f} GFLOP/s, "
                  f"{100 * result[f'rate_fraction{suffix}']:.1f} % of the conv stack's rate")
    if "peak_mb_256cube" in result:
        print(f"peak memory, 256^3 volume: {result['peak_mb_256cube']:.0f} MB")


def main() -> None:
    import isa_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="registry name or path (default: the registry default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat and no 256^3 memory run")
    parser.add_argument("--kernels", default="auto,on,off",
                        help="MRSYNTH_CPU_KERNELS settings synthesis is timed with, in the same rounds")
    parser.add_argument("--json", action="store_true")
    isa_settings.add_options(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    isa_settings.finish(__file__, args, measure, print_results, machine=platform.machine())


def print_results(results: dict[str, dict], args: argparse.Namespace) -> None:
    """Each ISA setting's synthesis rate and memory, as a human reads them."""
    for setting, result in results.items():
        print_result(setting, result, args.threads)


if __name__ == "__main__":
    main()
