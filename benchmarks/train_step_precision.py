"""How much faster is a CPU training step under ``mrsynth train --amp`` (bfloat16 autocast) than in float32?

Training happens on CPUs here, so the step time sets how many iterations a session buys. Under ``--amp`` the
trainer autocasts to bfloat16 only where oneDNN runs it natively (AVX512-BF16 or AMX, see
``mrsynth.devices.cpu_has_fast_bfloat16``); elsewhere bfloat16 is emulated. This script times both precisions on
the same batch, rounds interleaved so that load on the machine hits both alike, and reports medians and the ratio,
once per ISA setting (benchmarks/isa_settings.py: this CPU's own, and oneDNN capped at AVX2 as on AVX2-only CPUs).
The AVX2 figures show why the trainer falls back to float32 there.

The step is the one of the bundled BraTS recipe: tiny preset, 3 inputs, batch 8, 128x128 crops, L1 + (1 - SSIM)
loss, Adam.

    python benchmarks/train_step_precision.py              # markdown table, one row per setting and network
    python benchmarks/train_step_precision.py --json       # one JSON line: {"ratio_resunet": ..., ...}
    python benchmarks/train_step_precision.py --threads 1 --repeats 5 --isa native
"""

from __future__ import annotations

import argparse
import statistics
import time

ARCHS = ("resunet", "agi-net")


def training_step(arch: str, precision: str):
    """A closure running one seeded training step of ``arch`` in ``precision`` (float32 or bfloat16)."""
    import torch

    from mrsynth.models import build_model, preset
    from mrsynth.training.losses import ssim

    torch.manual_seed(0)
    model = build_model(preset("tiny", arch=arch, groups=8, in_channels=3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 128, 128, generator=generator)
    y = torch.rand(8, 1, 128, 128, generator=generator)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            fake = model(x).float()
        loss = (fake - y).abs().mean() + (1 - ssim(fake, y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(args: argparse.Namespace) -> dict:
    """Medians (seconds) of each network's step in both precisions, timed in interleaved rounds after a warm-up."""
    import torch

    from mrsynth.devices import cpu_has_fast_bfloat16

    torch.set_num_threads(args.threads)
    figures: dict = {"native_bfloat16": cpu_has_fast_bfloat16()}
    for arch in ARCHS:
        steps = {precision: training_step(arch, precision) for precision in ("float32", "bfloat16")}
        times: dict[str, list[float]] = {precision: [] for precision in steps}
        for step in steps.values():
            step()  # warm-up: oneDNN primitive creation
        for _ in range(args.repeats):
            for precision, step in steps.items():
                start = time.perf_counter()
                step()
                times[precision].append(time.perf_counter() - start)
        key = arch.replace("-", "_")
        figures[f"{key}_float32_s"] = statistics.median(times["float32"])
        figures[f"{key}_bfloat16_s"] = statistics.median(times["bfloat16"])
        figures[f"ratio_{key}"] = figures[f"{key}_float32_s"] / figures[f"{key}_bfloat16_s"]
    return figures


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    import torch

    print(f"{args.threads} thread(s), {args.repeats} interleaved rounds, torch {torch.__version__}; "
          "speed-up = float32 step / bfloat16 step (median)\n")
    print("| ISA setting | native bfloat16 | network | float32 step (s) | bfloat16 step (s) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for setting, figures in results.items():
        for arch in ARCHS:
            key = arch.replace("-", "_")
            print(f"| {setting} | {'yes' if figures['native_bfloat16'] else 'no'} | {arch} "
                  f"| {figures[f'{key}_float32_s']:.3f} | {figures[f'{key}_bfloat16_s']:.3f} "
                  f"| {figures[f'ratio_{key}']:.2f} |")


def main() -> None:
    import isa_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the recipe trains with 1 per run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    isa_settings.add_options(parser)
    args = parser.parse_args()
    isa_settings.finish(__file__, args, measure, print_table)


if __name__ == "__main__":
    main()
