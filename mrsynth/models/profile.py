"""Parameter and FLOP counts in the paper's convention (Tables 5 and 7): FLOPs = 2 x multiply-accumulates of
convolutions and matrix products, counted by ``torch.utils.flop_counter`` on one forward pass.

The deformable convolution's bilinear sampling (``grid_sample``, 4 multiply-adds per sampled value) is counted too:
it is the part of DCNv2 that is neither a convolution nor a matrix product, and torch's counter has no formula for
it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mrsynth.models.cagr import grouped_form
from mrsynth.ops import cpu_stem, deform_conv


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
    return Profile(params_m=count_parameters(model) / 1e6, gflops=count_flops(model, x) / 1e9)


@torch.no_grad()
def count_flops(model: nn.Module, x: Tensor) -> int:
    """FLOPs of one forward pass on ``x`` as the network is defined.

    Narrow grouped convolutions run as dense ones with zero blocks (:class:`GroupedConv2d`); counting those zeros
    would inflate the model's FLOPs, so they are counted in their grouped form here. The fused CPU routing stem is
    invisible to torch's counter, so the PyTorch stem runs instead; so is torchvision's deformable convolution, so
    the plain-torch one runs.
    """
    custom = {torch.ops.aten.grid_sampler_2d: _grid_sample_flops}
    with (FlopCounterMode(display=False, custom_mapping=custom) as counter, grouped_form(), cpu_stem.suspended(),
          deform_conv.reference_only()):
        model(x)
    return counter.get_total_flops()


def _grid_sample_flops(*shapes: object, out_shape: tuple[int, ...], **_: object) -> int:
    """Bilinear sampling: each output value is a weighted sum of 4 neighbours, 4 multiply-adds (2 FLOPs each)."""
    values = 1
    for size in out_shape:
        values *= size
    return 2 * 4 * values
