"""Shared by the routing-stem tests (test_cpu_stem, test_stem_dispatch): a routing function whose every parameter
shows in the stem's result, and the kernel variants this CPU can run."""

from __future__ import annotations

import torch

from mrsynth.models.cagr import RoutingFunction
from mrsynth.ops import cpu_isa

# Every kernel variant this CPU can run: its own (-march=native), AVX2's tiles where it has AVX2, and the portable one.
RUNNABLE_ISAS = [isa for isa in cpu_isa.ISAS if not isinstance(cpu_isa.march_flags(isa), str)]


def randomised_routing(channels: int, groups: int, seed: int) -> RoutingFunction:
    """Random conv, bias, LayerNorm and head parameters, so every term of the stem shows in the result (fresh heads
    are zero: their outputs, and the stem's gradients, would not depend on the stem at all)."""
    torch.manual_seed(seed)
    routing = RoutingFunction(channels, groups)
    with torch.no_grad():
        routing.offset_head.weight.normal_(0, 1.0)
        routing.scale_head.weight.normal_(0, 1.0)
        for conv in routing.stem[0::3]:
            conv.weight.normal_(0, 0.4)
            conv.bias.normal_(0, 0.5)
        for norm in routing.stem[1::3]:
            norm.weight.normal_(1, 0.3)
            norm.bias.normal_(0, 0.3)
    return routing
