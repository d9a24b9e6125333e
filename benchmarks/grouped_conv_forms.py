"""Which form of the routing stem's grouped 3x3 convolution is fastest on this CPU?

Why: the grouped convolutions are most of CAGR's extra time (``benchmarks/cagr_breakdown.py``); this times the forms
oneDNN offers for one of them (n = 8 groups, bias, batch 1), interleaved, median of ``--repeats`` calls, in ms.

    python benchmarks/grouped_conv_forms.py [--threads 2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

SHAPES = ((16, 256), (32, 256), (64, 256), (128, 128))


def timed(forms: dict, repeats: int) -> dict[str, float]:
    for form in forms.values():
        form()
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(repeats):
        for name, form in forms.items():
            start = time.perf_counter()
            form()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.utils import mkldnn

    from mrsynth.models.cagr import block_diagonal
    from mrsynth.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as every command does: fresh outputs would otherwise page-fault
    torch.set_num_threads(args.threads)
    groups = 8
    print("| channels, size | NHWC grouped | NCHW grouped | NHWC, prepacked weight | oneDNN blocked, with reorders "
          "| blocked, no reorders | NHWC dense, block-diagonal weight |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for channels, size in SHAPES:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=groups).eval()
        weight, bias = conv.weight.detach(), conv.bias.detach()
        x = torch.rand(1, channels, size, size)
        x_last = x.contiguous(memory_format=torch.channels_last)
        blocked_conv, x_blocked = mkldnn.to_mkldnn(conv), x.to_mkldnn()
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), [1, 1], [1, 1], [1, 1], groups,
                                                           list(x_last.shape))
        dense = block_diagonal(weight, groups)
        with torch.inference_mode():
            ms = timed({
                "nhwc": lambda: conv(x_last),
                "nchw": lambda: conv(x),
                "prepacked": lambda: torch.ops.mkldnn._convolution_pointwise(
                    x_last, packed, bias, [1, 1], [1, 1], [1, 1], groups, "none", [], ""),
                "blocked+reorders": lambda: blocked_conv(x_last.to_mkldnn()).to_dense(),
                "blocked": lambda: blocked_conv(x_blocked),
                "dense": lambda: F.conv2d(x_last, dense, bias, padding=1),
            }, args.repeats)
        print(f"| {channels}, {size}x{size} | " + " | ".join(f"{v:.2f}" for v in ms.values()) + " |")


if __name__ == "__main__":
    main()
