"""The routing stem of one CAGR module, PyTorch against the fused CPU kernel, at every stage shape of the presets.

Why: the fused kernel (mrsynth/ops/routing_stem.c) replaces [grouped 3x3 conv, LayerNorm, GELU] x 2 + global pooling
in CPU inference. This times both forms on the same input, alternating, and checks that they agree.

    python benchmarks/routing_stem.py [--threads 2] [--repeats 15] [--isa native|avx2|both] [--json]

``--isa`` as in cagr_overhead.py (benchmarks/isa_settings.py): by default the table is measured twice, with this
CPU's own kernel build and oneDNN, and as an AVX2 machine would run them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

# (preset, stage, channels, size, batch): batch 1 at 256x256 as in the overhead benchmark, and the tiny default
# model's shapes at synthesis (240x240 slices, batch 8).
SHAPES = [
    ("paper", "down1", 64, 256, 1), ("paper", "down2", 128, 128, 1), ("paper", "down3", 256, 64, 1),
    ("paper", "body", 512, 32, 1), ("light", "down1", 32, 256, 1), ("light", "down2", 64, 128, 1),
    ("light", "down3", 128, 64, 1), ("light", "body", 256, 32, 1), ("tiny", "down1", 16, 240, 8),
    ("tiny", "down2", 32, 120, 8), ("tiny", "down3", 64, 60, 8), ("tiny", "body", 128, 30, 8),
]


def measure(channels: int, size: int, batch: int, repeats: int) -> dict:
    import torch

    from mrsynth.models.cagr import ChannelLayerNorm, RoutingFunction
    from mrsynth.ops.cpu_stem import applies, fused_stem_features

    torch.manual_seed(0)
    routing = RoutingFunction(channels, 8).eval()
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        if not applies(routing.stem, x, ChannelLayerNorm):
            raise SystemExit("the fused kernel does not run here: see `mrsynth info`")
        forms = {"torch": lambda: routing.stem(x).mean(dim=(2, 3)), "fused": lambda: fused_stem_features(routing.stem, x)}
        results = {name: run() for name, run in forms.items()}
        error = ((results["fused"] - results["torch"]).norm() / results["torch"].norm()).item()
        times: dict[str, list[float]] = {name: [] for name in forms}
        for _ in range(repeats):
            for name, run in forms.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    torch_ms, fused_ms = (statistics.median(times[name]) * 1e3 for name in forms)
    return {"torch_ms": torch_ms, "fused_ms": fused_ms, "speedup": torch_ms / fused_ms, "rel_error": error}


def measure_all(args: argparse.Namespace) -> dict:
    """The child's work for one ISA setting: every shape of SHAPES."""
    import torch

    from isa_settings import machine_line
    from mrsynth.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    rows = [{"preset": preset, "stage": stage, "channels": channels, "size": size, "batch": batch,
             "threads": args.threads, **measure(channels, size, batch, args.repeats)}
            for preset, stage, channels, size, batch in SHAPES]
    return {"rows": rows, **machine_line()}


def main() -> None:
    import isa_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    isa_settings.add_options(parser)
    args = parser.parse_args()
    if args.isa_child:
        print(json.dumps(measure_all(args)))
        return
    for setting in isa_settings.chosen(args.isa):
        result = isa_settings.run_child(__file__, sys.argv[1:], setting)
        if args.json:
            for row in result["rows"]:
                print(json.dumps({"setting": setting, "cpu": result["cpu"], "kernel_isa": result["kernel_isa"],
                                  "onednn_max_isa": result["onednn_max_isa"],
                                  "aten_cpu_capability": result["aten_cpu_capability"], **row}))
            continue
        print(f"\n{setting} setting: {result['cpu']}, kernel {result['kernel_isa']}, "
              f"oneDNN {result['onednn_max_isa']}, ATen {result['aten_cpu_capability']}\n")
        print("| preset, stage | channels (per group), size, batch | PyTorch stem (ms) | fused kernel (ms) | speed-up |")
        print("| --- | --- | --- | --- | --- |")
        for r in result["rows"]:
            print(f"| {r['preset']} {r['stage']} | {r['channels']} ({r['channels'] // 8}), {r['size']}x{r['size']}, "
                  f"{r['batch']} | {r['torch_ms']:.2f} | {r['fused_ms']:.2f} | {r['speedup']:.2f}x |")


if __name__ == "__main__":
    main()
