"""Adaptive Rotated Convolution (ARC; Pu et al., ICCV 2023), the "ARC-ResUnet" row of the paper's Table 4.

ARC (Sec. 3.2 of Pu et al.) keeps n kernels W_1..W_n of the convolution's shape. A routing function (Sec. 3.3)
predicts, from each input, n rotation angles theta_i and n combination weights lambda_i; every kernel is rotated by
its angle and the sample is convolved with

    W~ = lambda_1 * Rot(W_1; theta_1) + ... + lambda_n * Rot(W_n; theta_n),        y = W~ * x.

Rotation treats the k x k kernel as samples of a function on the grid {-r..r}^2 (r = (k - 1) / 2): the rotated
kernel at grid point p is the original read at R(theta) p by bilinear interpolation. Rotated corners of the grid
leave the square; their coordinates are clamped back onto its border, the choice of the ARC authors' released
code (whose 3x3 interpolation matrices this reproduces for |theta| <= 45 degrees; the routing keeps |theta| below
40 degrees). Coordinates are (x, y) = (column, row) with rows downwards, so a positive theta turns the kernel's
pattern counter-clockwise as displayed, and theta = 90 degrees is ``torch.rot90(W, 1, (-2, -1))``.

The pdf of Pu et al. is not in this repository, so the equations above are cited by section, not by number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsynth.models.cagr import ChannelLayerNorm
from mrsynth.models.roll import per_sample_conv2d


def rotation_matrix(angles: Tensor, size: int) -> Tensor:
    """Rot(.; theta) as a (k^2 x k^2) matrix per angle: ``M @ w.flatten()`` is the rotated k x k kernel (Sec. 3.2).

    ``angles`` has any shape S (radians); the result has shape S + (k^2, k^2), taps in row-major order.
    Bilinear weights use floor and floor + 1 with the fraction carrying the gradient, so d M / d theta is the
    one-sided derivative at theta = 0 (where the map has a kink) rather than zero.
    """
    radius = (size - 1) / 2
    grid = torch.arange(size, dtype=angles.dtype, device=angles.device) - radius
    py, px = grid.repeat_interleave(size), grid.repeat(size)  # output taps p, row-major
    cos, sin = torch.cos(angles)[..., None], torch.sin(angles)[..., None]
    qx = (cos * px - sin * py).clamp(-radius, radius)  # R(theta) p, clamped onto the kernel's square
    qy = (sin * px + cos * py).clamp(-radius, radius)
    rows, cols = _axis_weights(qy, size), _axis_weights(qx, size)  # (..., K, k) each
    return (rows[..., :, :, None] * cols[..., :, None, :]).flatten(-2)


def _axis_weights(position: Tensor, size: int) -> Tensor:
    """Linear-interpolation weights of positions (..., P) in [-r, r] on the grid -r..r of ``size`` points: (..., P, k).

    Grid point j gets 1 - f at the lower neighbour floor(q) and f = q - floor(q) at the upper one; q = r uses the
    last cell with f = 1, so every row of weights sums to 1.
    """
    shifted = position + (size - 1) / 2  # grid index units, 0..k-1
    low = torch.floor(shifted).clamp(0, size - 2)
    frac = (shifted - low)[..., None]
    cells = torch.arange(size, dtype=position.dtype, device=position.device)
    low = low[..., None]
    return (1 - frac) * (cells == low).to(position.dtype) + frac * (cells == low + 1).to(position.dtype)


def adaptive_kernels(weight: Tensor, angles: Tensor, combination: Tensor) -> Tensor:
    """Each sample's W~ = sum_i lambda_i Rot(W_i; theta_i) (Sec. 3.2) as one matrix product.

    weight: (n, C_out, C_in, k, k); angles and combination: (B, n). Returns (B, C_out, C_in, k, k).
    """
    kernels, c_out, c_in, k, _ = weight.shape
    batch = angles.shape[0]
    taps = k * k
    mix = rotation_matrix(angles, k) * combination[..., None, None]  # (B, n, K, K): lambda_i Rot(theta_i)
    mix = mix.transpose(1, 2).reshape(batch, taps, kernels * taps)  # rows: output tap; columns: (kernel, tap)
    stacked = weight.reshape(kernels, c_out * c_in, taps).transpose(1, 2).reshape(kernels * taps, c_out * c_in)
    combined = torch.matmul(mix, stacked)  # (B, K, C_out * C_in)
    return combined.transpose(1, 2).reshape(batch, c_out, c_in, k, k)


class RotationRouting(nn.Module):
    """ARC's routing function (Sec. 3.3): angles theta_i and combination weights lambda_i from the input.

    3x3 depthwise conv (no bias) -> LayerNorm over channels -> ReLU -> global average pool -> dropout, then
    lambda = sigmoid(Linear(C -> n, bias)) and theta = softsign(Linear(C -> n, no bias, so no preferred angle)) times
    the largest angle (softsign saturates more slowly than tanh). The paper initialises the routing from a truncated
    normal; its std (0.02), the 0.2 dropout and the 40-degree range are those of the authors' released code.
    """

    def __init__(self, channels: int, kernels: int, dropout: float = 0.2, max_angle_deg: float = 40.0) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=False)
        self.norm = ChannelLayerNorm(channels, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.combination_head = nn.Linear(channels, kernels, bias=True)
        self.angle_head = nn.Linear(channels, kernels, bias=False)
        self.max_angle = math.radians(max_angle_deg)
        for layer in (self.depthwise, self.combination_head, self.angle_head):
            nn.init.trunc_normal_(layer.weight, std=0.02)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = F.relu(self.norm(self.depthwise(x))).mean(dim=(2, 3))
        combination = torch.sigmoid(self.combination_head(self.dropout(features)))  # lambda_i
        angles = F.softsign(self.angle_head(self.dropout(features))) * self.max_angle  # theta_i
        return angles, combination


class AdaptiveRotatedConv2d(nn.Module):
    """Drop-in replacement for a bias-free k x k ``nn.Conv2d``: routing, rotated and combined kernel, convolution.

    The n kernels are initialised as in the ARC code (Kaiming normal, fan-out, ReLU gain), so this module has n
    times the weights of the conv it replaces plus the routing's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, kernels: int = 4) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(kernels, out_channels, in_channels, kernel_size, kernel_size))
        for kernel in self.weight.data:
            nn.init.kaiming_normal_(kernel, mode="fan_out", nonlinearity="relu")
        self.routing = RotationRouting(in_channels, kernels)

    def forward(self, x: Tensor) -> Tensor:
        angles, combination = self.routing(x)
        kernels = adaptive_kernels(self.weight, angles, combination)
        return per_sample_conv2d(x, kernels, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        n, c_out, c_in, k, _ = self.weight.shape
        return f"{c_in}, {c_out}, kernel_size={k}, stride={self.stride}, padding={self.padding}, kernels={n}"
