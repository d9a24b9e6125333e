"""The ResUnet backbone (KAIR-style, as in the paper's baseline) with a pluggable first conv of each ResBlock.

AGI-Net is this network with ``first_conv`` returning CAGR in chosen stages, so both architectures share one
forward pass and differ only in which module fills a slot.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsynth.models.config import STAGES

ConvFactory = Callable[[str, int], nn.Module]
"""(stage name, channels) -> a 3x3, stride-1, padding-1, bias-free conv of that width."""


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


def plain_conv(stage: str, channels: int) -> nn.Module:
    return conv3x3(channels, channels)


class ResBlock(nn.Module):
    """z + F(relu(F(z))), the first F being the slot CAGR may fill."""

    def __init__(self, first: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv1 = first
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def res_blocks(stage: str, channels: int, count: int, first_conv: ConvFactory) -> list[nn.Module]:
    return [ResBlock(first_conv(stage, channels), channels) for _ in range(count)]


class ResUnet(nn.Module):
    """head -> down1..3 -> body -> up1..3 -> tail, with additive skips; every conv bias-free.

    Inputs whose height or width is not a multiple of 8 are zero-padded (background in normalised MRI is 0)
    and the output cropped back, so any slice size works. Activations run in channels-last memory, where oneDNN's
    convolutions and the routing function's LayerNorm are fastest on CPUs (and tensor cores on GPUs).
    """

    multiple = 8

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        blocks_per_stage: int = 2,
        first_conv: ConvFactory = plain_conv,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = widths
        nb = blocks_per_stage

        def down(stage: str, c: int, c_next: int) -> nn.Sequential:
            return nn.Sequential(
                *res_blocks(stage, c, nb, first_conv), nn.Conv2d(c, c_next, kernel_size=2, stride=2, bias=False)
            )

        def up(stage: str, c_prev: int, c: int) -> nn.Sequential:
            return nn.Sequential(
                nn.ConvTranspose2d(c_prev, c, kernel_size=2, stride=2, bias=False), *res_blocks(stage, c, nb, first_conv)
            )

        self.head = conv3x3(in_channels, c1)
        self.down1 = down("down1", c1, c2)
        self.down2 = down("down2", c2, c3)
        self.down3 = down("down3", c3, c4)
        self.body = nn.Sequential(*res_blocks("body", c4, nb, first_conv))
        self.up1 = up("up1", c4, c3)
        self.up2 = up("up2", c3, c2)
        self.up3 = up("up3", c2, c1)
        self.tail = conv3x3(c1, out_channels)
        assert all(hasattr(self, s) for s in STAGES)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = x.contiguous(memory_format=torch.channels_last)
        x1 = self.head(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        y = self.body(x4)
        y = self.up1(y + x4)
        y = self.up2(y + x3)
        y = self.up3(y + x2)
        y = self.tail(y + x1)
        return y[..., :height, :width]
