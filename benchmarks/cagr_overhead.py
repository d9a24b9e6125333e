"""How much slower is AGI-Net than the ResUnet it is built on, per forward pass and per training step?

The paper's claim is +8.7 % FLOPs (154.28 vs 141.91 G at 256x256). This script measures time, interleaving the two
networks' repeats so that load on the machine hits both alike, and reports medians, spreads (min-max) and the ratio.

    python benchmarks/cagr_overhead.py                 # table on stdout (markdown), the issue's configurations
    python benchmarks/cagr_overhead.py --json          # one JSON line: {"ratio_full": ..., "ratio_light": ...}
    python benchmarks/cagr_overhead.py --sizes 128,256 --batches 1,4 --train

Peak memory (VmHWM) is measured in a fresh child process per network so one run's allocations do not hide another's.
"""

from __future__ import annotations

import argparse
import json
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


def time_pair(preset_name: str, groups: int, batch: int, size: int, train: bool, repeats: int) -> dict:
    """Interleaved timings of AGI-Net and ResUnet: A, R, A, R, ... after one warm-up each."""
    runs = {arch: step_function(build(preset_name, arch, groups), batch, size, train) for arch in ("agi-net", "resunet")}
    times: dict[str, list[float]] = {arch: [] for arch in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for arch, run in runs.items():
            start = time.perf_counter()
            run()
            times[arch].append(time.perf_counter() - start)
    med = {arch: statistics.median(t) for arch, t in times.items()}
    # The ratio of medians, and the median of per-round ratios (robust when load drifts during the run).
    per_round = [a / r for a, r in zip(times["agi-net"], times["resunet"])]
    return {
        "preset": preset_name, "groups": groups, "batch": batch, "size": size, "mode": "train" if train else "forward",
        "agi_net_s": med["agi-net"], "resunet_s": med["resunet"],
        "agi_net_spread_s": [min(times["agi-net"]), max(times["agi-net"])],
        "resunet_spread_s": [min(times["resunet"]), max(times["resunet"])],
        "ratio": med["agi-net"] / med["resunet"], "ratio_rounds_median": statistics.median(per_round),
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--presets", default="paper,light")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--sizes", default="256")
    parser.add_argument("--batches", default="1")
    parser.add_argument("--train", action="store_true", help="also time a training step (L1 loss, Adam)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory in child processes")
    parser.add_argument("--json", action="store_true", help="print one JSON line with the issue's two ratios")
    parser.add_argument("--no-allocator-tuning", action="store_true",
                        help="leave glibc's allocator as it is (mrsynth's commands tune it, see mrsynth/runtime.py)")
    args = parser.parse_args()

    import torch

    from mrsynth.runtime import tune_cpu_allocator

    if not args.no_allocator_tuning:
        tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    presets = args.presets.split(",")
    if args.json:
        ratios = {p: time_pair(p, args.groups, 1, 256, False, args.repeats)["ratio"] for p in ("paper", "light")}
        print(json.dumps({"ratio_full": round(ratios["paper"], 4), "ratio_light": round(ratios["light"], 4),
                          "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__}))
        return
    rows = []
    for p in presets:
        for size in map(int, args.sizes.split(",")):
            for batch in map(int, args.batches.split(",")):
                for train in ([False, True] if args.train else [False]):
                    row = time_pair(p, args.groups, batch, size, train, args.repeats)
                    if args.memory:
                        row["agi_net_peak_mb"] = child_peak(p, "agi-net", args.groups, batch, size, train, args.threads)
                        row["resunet_peak_mb"] = child_peak(p, "resunet", args.groups, batch, size, train, args.threads)
                    rows.append(row)
    print(f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"command: python benchmarks/cagr_overhead.py {' '.join(sys.argv[1:])}\n")
    print("| preset | mode | batch | size | AGI-Net s (min-max) | ResUnet s (min-max) | ratio | per-round ratio |"
          + (" peak MB AGI / Res |" if args.memory else ""))
    print("| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if args.memory else ""))
    for r in rows:
        mem = f" {r['agi_net_peak_mb']:.0f} / {r['resunet_peak_mb']:.0f} |" if args.memory else ""
        print(f"| {r['preset']} | {r['mode']} | {r['batch']} | {r['size']} | {r['agi_net_s']:.3f} "
              f"({r['agi_net_spread_s'][0]:.3f}-{r['agi_net_spread_s'][1]:.3f}) | {r['resunet_s']:.3f} "
              f"({r['resunet_spread_s'][0]:.3f}-{r['resunet_spread_s'][1]:.3f}) | {r['ratio']:.3f} | {r['ratio_rounds_median']:.3f} |{mem}")


if __name__ == "__main__":
    main()
