"""Parameter and FLOP counts in the paper's convention (Tables 5 and 7): FLOPs = 2 x multiply-accumulates of
convolutions and matrix products, counted by ``torch.utils.flop_counter`` on one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Profile:
    params_m: float
    gflops: float


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def profile_model(model: nn.Module, in_channels: int, size: int = 256) -> Profile:
    """Parameters (millions) and GFLOPs of one forward pass on a single ``size`` x ``size`` slice."""
    model.eval()
    x = torch.randn(1, in_channels, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return Profile(params_m=count_parameters(model) / 1e6, gflops=counter.get_total_flops() / 1e9)
