"""Modulated deformable convolution (DCNv2; Zhu et al. 2019), the "Deform-ResUnet" row of the paper's Table 4.

The paper builds Deform-ResUnet by putting a deformable convolution in exactly the slots AGI-Net gives CAGR
(Sec. 4.3, "Different Dynamic Convolutions"); this module is that drop-in replacement for a bias-free 3x3 conv.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mrsynth.ops.deform_conv import deform_conv2d


class DeformConv2d(nn.Module):
    """DCNv2 (Zhu et al. 2019, Eq. 3): y(p) = sum_k w_k * x(p + p_k + dp_k) * dm_k.

    The offsets dp_k (2K channels) and modulation scalars dm_k (K channels, sigmoid) come from a separate conv over
    the same input with the main one's kernel size, stride, padding and dilation (3x3 in the ResUnet's slots), so
    one prediction per output pixel; its weight and bias start at zero as in
    DCNv2 (Sec. 3.1): training starts from the regular grid with every tap modulated by sigmoid(0) = 0.5.
    The main weight has the shape and initialisation of the ``nn.Conv2d`` it replaces.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.taps = kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.offset_mask = nn.Conv2d(in_channels, 3 * self.taps, kernel_size, stride=stride, padding=padding,
                                     dilation=dilation, bias=True)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        predicted = self.offset_mask(x)
        offset, modulation = predicted[:, : 2 * self.taps], predicted[:, 2 * self.taps :]
        return deform_conv2d(x, offset, torch.sigmoid(modulation), self.weight, self.stride, self.padding,
                             self.dilation)

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight.shape
        return f"{c_in}, {c_out}, kernel_size={k}, stride={self.stride}, padding={self.padding}"
