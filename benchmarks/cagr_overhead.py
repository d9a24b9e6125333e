"""How much slower is AGI-Net than the ResUnet it is built on, per forward pass and per training step?

The paper's claim is +8.7 % FLOPs (154.28 vs 141.91 G at 256x256). This script measures time, interleaving the
networks' repeats so that load on the machine hits all alike, and reports medians, spreads (min-max) and ratios.
AGI-Net is timed three ways in the same rounds: MRSYNTH_CPU_KERNELS=auto (the default: fused stem or PyTorch per
layer shape, whichever timed faster), =on (always the fused stem) and =off (always PyTorch).

Each ISA setting runs in its own process (benchmarks/isa_settings.py): ``native`` (this CPU's own) and ``avx2``
(oneDNN capped at AVX2, ATen's AVX2 kernels and the kernel built for -march=x86-64-v3), so an AVX-512 machine
reports both.

    python benchmarks/cagr_overhead.py --json          # one JSON line: {"ratio_full": ..., "ratio_light": ...,
                                                       #   "ratio_full_on": ..., "ratio_full_off": ..., ...,
                                                       #   "ratio_full_avx2": ..., "ratio_light_avx2": ..., ...}
    python benchmarks/cagr_overhead.py --json --quick  # the same with 3 repeats instead of 9
    python benchmarks/cagr_overhead.py                 # markdown table, one row per setting and configuration
    python benchmarks/cagr_overhead.py --isa native --sizes 128,256 --batches 1,4 --train

Peak memory (VmHWM) is measured in a fresh child process per network so one run's allocations do not hide another's.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(preset_name: str, arch: str, groups: int):
    import torch

    from mrsynth.models import build_model, preset

    torch.manual_seed(0)
    return build_model(preset(preset_name, arch=arch, groups=groups))


def step_function(model, batch: int, size: int, train: bool):
    import torch

    x = torch.rand(batch, model.config.in_channels, size, size)
    if not train:
        model.eval()

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        return forward
    model.train()
    target = torch.rand(batch, 1, size, size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        (model(x) - target).abs().mean().backward()
        optimizer.step()

    return step


def time_pair(preset_name: str, groups: int, batch: int, size: int, train: bool, repeats: int,
              switches: tuple[str, ...]) -> dict:
    """Interleaved timings of AGI-Net (once per kernel switch) and ResUnet, after one warm-up each; the warm-up is
    where ``auto`` times its choices."""
    from isa_settings import kernels

    runs = {arch: step_function(build(preset_name, arch, groups), batch, size, train)
            for arch in ("agi-net", "resunet")}
    variants = [(f"agi-net-{switch}", runs["agi-net"], switch) for switch in (switches if not train else ("auto",))]
    variants.append(("resunet", runs["resunet"], "auto"))
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _, run, switch in variants:
        with kernels(switch):
            run()
    for _ in range(repeats):
        for name, run, switch in variants:
            with kernels(switch):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    row = {
        "preset": preset_name, "groups": groups, "batch": batch, "size": size, "mode": "train" if train else "forward",
        "resunet_s": med["resunet"], "resunet_spread_s": [min(times["resunet"]), max(times["resunet"])],
    }
    for name in times:
        if name == "resunet":
            continue
        switch = name.removeprefix("agi-net-")
        # The ratio of medians, and the median of per-round ratios (robust when load drifts during the run).
        per_round = [a / r for a, r in zip(times[name], times["resunet"])]
        row[switch] = {"agi_net_s": med[name], "agi_net_spread_s": [min(times[name]), max(times[name])],
                       "ratio": med[name] / med["resunet"], "ratio_rounds_median": statistics.median(per_round)}
    return row


def child_peak(preset_name: str, arch: str, groups: int, batch: int, size: int, train: bool, threads: int) -> float:
    code = (
        "import torch, sys; sys.path.insert(0, 'benchmarks'); import cagr_overhead as c; "
        "from mrsynth.runtime import tune_cpu_allocator; tune_cpu_allocator(); "
        f"torch.set_num_threads({threads}); "
        f"run = c.step_function(c.build({preset_name!r}, {arch!r}, {groups}), {batch}, {size}, {train}); run(); run(); "
        "print(c.peak_rss_mb())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """The child's work for one ISA setting: the JSON figures, or the table's rows."""
    import torch

    from isa_settings import machine_line
    from mrsynth.ops.stem_dispatch import recorded_choices
    from mrsynth.runtime import tune_cpu_allocator

    if not args.no_allocator_tuning:
        tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    switches = tuple(args.kernels.split(","))
    if args.json:
        figures = {}
        for name, preset_name in (("full", "paper"), ("light", "light")):
            row = time_pair(preset_name, args.groups, 1, 256, False, args.repeats, switches)
            for switch in switches:
                key = f"ratio_{name}" if switch == "auto" else f"ratio_{name}_{switch}"
                figures[key] = round(row[switch]["ratio"], 4)
        return {**figures, **machine_line(), "choices": recorded_choices()}
    rows = []
    for p in args.presets.split(","):
        for size in map(int, args.sizes.split(",")):
            for batch in map(int, args.batches.split(",")):
                for train in ([False, True] if args.train else [False]):
                    row = time_pair(p, args.groups, batch, size, train, args.repeats, switches)
                    if args.memory:
                        row["agi_net_peak_mb"] = child_peak(p, "agi-net", args.groups, batch, size, train, args.threads)
                        row["resunet_peak_mb"] = child_peak(p, "resunet", args.groups, batch, size, train, args.threads)
                    rows.append(row)
    return {"rows": rows, **machine_line()}


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    import torch

    print(f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}; "
          f"command: python benchmarks/cagr_overhead.py {' '.join(sys.argv[1:])}\n")
    print("| ISA setting | preset | mode | batch | size | kernels | AGI-Net s (min-max) | ResUnet s (min-max) | ratio "
          "| per-round ratio |" + (" peak MB AGI / Res |" if args.memory else ""))
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if args.memory else ""))
    for setting, result in results.items():
        label = (f"{setting} ({result['cpu']}; kernel {result['kernel_isa']}, oneDNN {result['onednn_max_isa']}, "
                 f"ATen {result['aten_cpu_capability']})")
        for r in result["rows"]:
            mem = f" {r['agi_net_peak_mb']:.0f} / {r['resunet_peak_mb']:.0f} |" if args.memory else ""
            for switch in (s for s in ("auto", "on", "off") if s in r):
                a = r[switch]
                print(f"| {label} | {r['preset']} | {r['mode']} | {r['batch']} | {r['size']} | {switch} "
                      f"| {a['agi_net_s']:.3f} ({a['agi_net_spread_s'][0]:.3f}-{a['agi_net_spread_s'][1]:.3f}) "
                      f"| {r['resunet_s']:.3f} ({r['resunet_spread_s'][0]:.3f}-{r['resunet_spread_s'][1]:.3f}) "
                      f"| {a['ratio']:.3f} | {a['ratio_rounds_median']:.3f} |{mem}")


def main() -> None:
    import isa_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of --repeats")
    parser.add_argument("--presets", default="paper,light")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--sizes", default="256")
    parser.add_argument("--batches", default="1")
    parser.add_argument("--kernels", default="auto,on,off",
                        help="MRSYNTH_CPU_KERNELS settings AGI-Net is timed with, in the same rounds (auto is the "
                             "default users get; on and off force the fused stem or PyTorch)")
    parser.add_argument("--train", action="store_true", help="also time a training step (L1 loss, Adam)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory in child processes")
    parser.add_argument("--json", action="store_true", help="print one JSON line with the issue's ratios")
    parser.add_argument("--no-allocator-tuning", action="store_true",
                        help="leave glibc's allocator as it is (mrsynth's commands tune it, see mrsynth/runtime.py)")
    isa_settings.add_options(parser)
    args = parser.parse_args()
    if args.quick:
        args.repeats = 3
    isa_settings.finish(__file__, args, measure, print_table)


if __name__ == "__main__":
    main()
