"""The CAGR module: Cross Group Attention followed by a Group-wise Rolling convolution (paper Sec. 3).

Each class is one box of the paper's Fig. 4; the design choices the paper leaves open (grouped 1x1 conv in the
attention, two grouped 3x3 layers in the routing stem, zero-initialised heads) are those that reproduce its
parameter and FLOP tables, see ``shared/spec/cagr.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsynth.models.roll import per_sample_conv2d, rolled_kernel
from mrsynth.ops.cpu_stem import applies as fused_stem_applies
from mrsynth.ops.flags import switched_on
from mrsynth.ops.stem_dispatch import stem_features as dispatched_stem_features


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: (B, n*g, ...) -> interleave the n groups so each group sees all others."""
    batch, channels = x.shape[:2]
    rest = x.shape[2:]
    return x.reshape(batch, groups, channels // groups, *rest).transpose(1, 2).reshape(batch, channels, *rest)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel.

    The network runs in channels-last memory, where the NHWC view below is free and ``F.layer_norm`` over its last
    axis is one fused pass (an NCHW mean/var chain costs several passes over the feature map).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        normalized = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return normalized.permute(0, 3, 1, 2)


class GroupedConv2d(nn.Conv2d):
    """A grouped convolution that runs as a dense one with a block-diagonal weight when groups are very narrow.

    Why: with one or two channels per group (the tiny preset's 16 channels in 8 groups) oneDNN's grouped CPU kernels
    are slower than its dense kernel doing 8x the multiply-adds, so the zeros are cheaper than the grouping (GPUs
    keep the grouped form).
    Parameters and results are those of the grouped ``nn.Conv2d`` (the extra terms are exact zeros).
    """

    dense_up_to = 2  # channels per group at or below which the dense form is used

    def forward(self, x: Tensor) -> Tensor:
        if (x.is_cuda or self.groups == 1 or self.in_channels // self.groups > self.dense_up_to
                or _GROUPED_FORM.get()):
            return super().forward(x)
        return F.conv2d(x, block_diagonal(self.weight, self.groups), self.bias, self.stride, self.padding)


# Per thread (and asyncio task), so that counting FLOPs never changes how another thread's model runs.
_GROUPED_FORM: contextvars.ContextVar[bool] = contextvars.ContextVar("mrsynth_grouped_form", default=False)


def grouped_form() -> contextlib.AbstractContextManager[None]:
    """Inside the block every :class:`GroupedConv2d` runs grouped, as defined (what a FLOP count must see)."""
    return switched_on(_GROUPED_FORM)


def block_diagonal(weight: Tensor, groups: int) -> Tensor:
    """(C_out, C_in / n, k, k) grouped weight -> (C_out, C_in, k, k) dense weight, zero between groups."""
    c_out, c_in_group = weight.shape[:2]
    per_group = weight.view(groups, c_out // groups, c_in_group, *weight.shape[2:])
    dense = weight.new_zeros(groups, c_out // groups, groups, c_in_group, *weight.shape[2:])
    index = torch.arange(groups, device=weight.device)
    dense[index, :, index] = per_group
    return dense.view(c_out, groups * c_in_group, *weight.shape[2:])


class CrossGroupAttention(nn.Module):
    """Eq. 1-2: A_i = sigmoid(F([z_i, z^s_i])), x~_i = x_i * A_i, with z the pooled x and z^s its shuffle."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        # F: for each group, 2C/n pooled values (intra + inter) -> C/n attention weights.
        self.fuse = nn.Conv2d(2 * channels, channels, kernel_size=1, groups=groups, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels = x.shape[:2]
        n = self.groups
        z = x.mean(dim=(2, 3))  # intra-group pool features z_i
        z_shuffled = channel_shuffle(z, n)  # inter-group features z^s_i
        pairs = torch.stack((z.view(batch, n, -1), z_shuffled.view(batch, n, -1)), dim=2)  # concat[z_i, z^s_i]
        attention = torch.sigmoid(self.fuse(pairs.reshape(batch, 2 * channels, 1, 1)))  # Eq. 1
        return x * attention  # Eq. 2


class RoutingFunction(nn.Module):
    """Predicts each group's rolling offsets (ox_i, oy_i) and scale factor lambda_i from x~.

    Stem: [3x3 grouped conv -> LayerNorm -> GELU] x 2, then global average pooling. Both heads start at zero
    weight (and lambda's bias at 1) so that training starts from an unrolled, uniformly scaled convolution.
    """

    def __init__(self, channels: int, groups: int, depth: int = 2) -> None:
        super().__init__()
        self.groups = groups
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [
                GroupedConv2d(channels, channels, kernel_size=3, padding=1, groups=groups, bias=True),
                ChannelLayerNorm(channels),
                nn.GELU(),
            ]
        self.stem = nn.Sequential(*layers)
        self.offset_head = nn.Linear(channels, 2 * groups, bias=False)
        self.scale_head = nn.Linear(channels, groups, bias=True)
        nn.init.zeros_(self.offset_head.weight)
        nn.init.zeros_(self.scale_head.weight)
        nn.init.ones_(self.scale_head.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if fused_stem_applies(self.stem, x, ChannelLayerNorm):  # CPU inference: fused kernel or PyTorch, the faster
            features = dispatched_stem_features(self.stem, x)
        else:
            features = self.stem(x).mean(dim=(2, 3))
        offsets = self.offset_head(features).view(-1, self.groups, 2)  # (ox_i, oy_i), no activation
        scale = torch.sigmoid(self.scale_head(features))  # lambda_i
        return offsets, scale


class CAGR(nn.Module):
    """Drop-in replacement for a bias-free k x k ``nn.Conv2d``: attention, routing, rolled kernel, convolution.

    ``attention=False`` gives the GR-only ablation (x~ = x); ``rolling=False`` the CA-only ablation (attention
    followed by the plain shared-weight convolution).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        groups: int = 8,
        attention: bool = True,
        rolling: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups:
            raise ValueError(f"in_channels={in_channels} is not divisible by groups={groups}")
        self.stride = stride
        self.padding = padding
        self.groups = groups
        # The shared weight W (Eq. 3): same shape and initialisation as the convolution it replaces.
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.attention = CrossGroupAttention(in_channels, groups) if attention else None
        self.routing = RoutingFunction(in_channels, groups) if rolling else None

    def forward(self, x: Tensor) -> Tensor:
        if self.attention is not None:
            x = self.attention(x)
        if self.routing is None:
            return F.conv2d(x, self.weight, stride=self.stride, padding=self.padding)
        offsets, scale = self.routing(x)
        kernels = rolled_kernel(self.weight, offsets, scale)  # Eq. 4, one kernel set per sample
        return per_sample_conv2d(x, kernels, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight.shape
        return f"{c_in}, {c_out}, kernel_size={k}, stride={self.stride}, padding={self.padding}, groups={self.groups}"
