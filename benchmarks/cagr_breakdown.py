"""Where AGI-Net's extra time goes on the CPU, by operator family, against the ResUnet it is built on.

Why: the performance issue asks for AGI-Net <= 1.15x (paper widths) and <= 1.20x (light) of ResUnet's forward time.
This script splits the difference into the routing stem's grouped 3x3 convolutions, LayerNorm, GELU, pooling,
kernel building and the rest, and prints the ratio that the grouped convolutions alone would leave if everything
else in CAGR were free: a floor for any change that keeps oneDNN's grouped convolution.

    python benchmarks/cagr_breakdown.py [--presets paper light] [--threads 2] [--size 256] [--repeats 7] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time


def family(event) -> str:
    """Operator family of one profiler row (grouped convs told apart from dense ones by their weight shape)."""
    name = event.key
    if name == "aten::mkldnn_convolution":
        x_shape, w_shape = event.input_shapes[0], event.input_shapes[1]
        return "grouped conv" if w_shape[1] * 2 <= x_shape[1] and w_shape[-1] == 3 else "dense conv"
    return {
        "mrsynth::fused_routing_stem": family_of_fused_stem,
        "aten::native_layer_norm": "LayerNorm", "aten::gelu": "GELU", "aten::sum": "pooling", "aten::mean": "pooling",
        "aten::bmm": "kernel building", "aten::mul": "attention/elementwise", "aten::sigmoid": "attention/elementwise",
    }.get(name, "other")


family_of_fused_stem = "fused routing stem (conv, LayerNorm, GELU, pooling)"


def measure(preset_name: str, size: int, repeats: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mrsynth.models import build_model, preset

    x = torch.rand(1, 2, size, size)
    models = {}
    for arch in ("agi-net", "resunet"):
        torch.manual_seed(0)
        models[arch] = build_model(preset(preset_name, arch=arch, groups=8)).eval()
    times: dict[str, list[float]] = {arch: [] for arch in models}
    shares: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for model in models.values():
            model(x)
        for _ in range(repeats):
            for arch, model in models.items():
                start = time.perf_counter()
                model(x)
                times[arch].append(time.perf_counter() - start)
        for arch, model in models.items():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                model(x)
            totals: dict[str, float] = collections.defaultdict(float)
            for event in prof.key_averages(group_by_input_shape=True):
                totals[family(event)] += event.self_cpu_time_total / 1e3
            shares[arch] = dict(totals)
    agi, res = (statistics.median(times[a]) * 1e3 for a in ("agi-net", "resunet"))
    profiled_agi, profiled_res = sum(shares["agi-net"].values()), sum(shares["resunet"].values())
    # Profiler times carry its own overhead; scale each family to the measured forward time.
    extra = {k: v * agi / profiled_agi - shares["resunet"].get(k, 0.0) * res / profiled_res
             for k, v in shares["agi-net"].items()}
    grouped = shares["agi-net"].get("grouped conv", 0.0) * agi / profiled_agi
    fused = shares["agi-net"].get(family_of_fused_stem, 0.0) * agi / profiled_agi
    return {
        "preset": preset_name, "size": size, "agi_ms": agi, "resunet_ms": res, "ratio": agi / res,
        "extra_ms": {k: round(v, 1) for k, v in sorted(extra.items(), key=lambda kv: -kv[1])},
        "grouped_conv_ms": grouped, "floor_ratio_grouped_convs_only": (res + grouped) / res,
        "fused_stem_ms": fused, "floor_ratio_fused_stems_only": (res + fused) / res,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["paper", "light"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from mrsynth.runtime import tune_cpu_allocator

    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    for name in args.presets:
        result = measure(name, args.size, args.repeats)
        result["threads"] = args.threads
        if args.json:
            print(json.dumps(result))
            continue
        print(f"{name}: AGI-Net {result['agi_ms']:.0f} ms, ResUnet {result['resunet_ms']:.0f} ms, "
              f"ratio {result['ratio']:.3f}; grouped convs alone {result['grouped_conv_ms']:.0f} ms "
              f"-> floor {result['floor_ratio_grouped_convs_only']:.3f}; fused stems alone "
              f"{result['fused_stem_ms']:.0f} ms -> floor {result['floor_ratio_fused_stems_only']:.3f}")
        for family_name, ms in result["extra_ms"].items():
            print(f"  {family_name:24s} {ms:+8.1f} ms")


if __name__ == "__main__":
    main()
