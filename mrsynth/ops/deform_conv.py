"""Modulated deformable convolution (DCNv2, Zhu et al. 2019, Eq. 3): plain tensors in, a tensor out.

    y(p) = sum_k w_k * x(p + p_k + dp_k) * dm_k

over the K = k_h * k_w taps p_k of a regular kernel grid, with a learned offset dp_k and modulation dm_k per output
pixel, and x at fractional positions read by bilinear interpolation, zero outside the image.

Two paths compute it:

* ``torchvision.ops.deform_conv2d`` (one fused kernel, CPU and CUDA) wherever a torchvision built for the installed
  torch imports; it is an optional extra (``mrsynth[torchvision]``), imported lazily on first use.
* :func:`deform_conv2d_reference` in plain torch everywhere else: ``F.grid_sample`` reads the K shifted copies of
  x, the masks multiply them, and one matrix product with the weight sums taps and channels. It is the definition
  the tests compare against (float64) and what torch's FLOP counter sees (:func:`reference_only`).

Layout (torchvision's, so both paths take the same tensors): ``offset`` is (B, 2K, H_out, W_out) with (dy_k, dx_k)
at channels (2k, 2k+1), taps in row-major kernel order; ``mask`` is (B, K, H_out, W_out). One offset group.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mrsynth.ops.flags import switched_on

Pair = tuple[int, int]

_REFERENCE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("mrsynth_deform_reference", default=False)


def reference_only() -> contextlib.AbstractContextManager[None]:
    """Run the plain-torch path inside the block (this thread only), e.g. so that a FLOP counter sees its ops."""
    return switched_on(_REFERENCE_ONLY)


@functools.cache
def torchvision_status() -> tuple[bool, str]:
    """(usable, detail): whether ``torchvision.ops.deform_conv2d`` loads here, and why not.

    A torchvision wheel built for another torch fails at import (e.g. ``operator torchvision::nms does not exist``),
    so any exception means "not usable", never an error of the caller's.
    """
    try:
        import torchvision
        from torchvision.ops import deform_conv2d  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the plain-torch path
        return False, f"torchvision not usable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return True, f"torchvision {torchvision.__version__}"


def deform_conv2d(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, stride: int | Pair = 1,
                  padding: int | Pair = 0, dilation: int | Pair = 1) -> Tensor:
    """DCNv2 through torchvision where it loads, else :func:`deform_conv2d_reference` (same arguments, no bias)."""
    if not _REFERENCE_ONLY.get() and x.device.type != "meta" and torchvision_status()[0]:
        from torchvision.ops import deform_conv2d as fused

        return fused(x, offset, weight, stride=stride, padding=padding, dilation=dilation, mask=mask)
    return deform_conv2d_reference(x, offset, mask, weight, stride, padding, dilation)


def deform_conv2d_reference(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, stride: int | Pair = 1,
                            padding: int | Pair = 0, dilation: int | Pair = 1) -> Tensor:
    """DCNv2 in plain torch: bilinear sampling of the K taps with ``F.grid_sample``, then one matrix product.

    x: (B, C_in, H, W); offset: (B, 2K, H_out, W_out); mask: (B, K, H_out, W_out); weight: (C_out, C_in, k_h, k_w).
    Returns (B, C_out, H_out, W_out).

    Sampling positions are built in pixel units and mapped to ``grid_sample``'s [-1, 1] with ``align_corners=False``
    (pixel i at (2i + 1) / W - 1), which is exact for any size, 1 included; ``padding_mode="zeros"`` gives each
    bilinear corner outside the image the value 0, as the definition's zero padding does.
    """
    (s_h, s_w), (p_h, p_w), (d_h, d_w) = _pair(stride), _pair(padding), _pair(dilation)
    batch, c_in, height, width = x.shape
    c_out, _, k_h, k_w = weight.shape
    taps = k_h * k_w
    h_out, w_out = offset.shape[-2:]
    _check_shapes(x, offset, mask, weight, _out_size(height, width, (k_h, k_w), (s_h, s_w), (p_h, p_w), (d_h, d_w)))
    factory: dict[str, Any] = {"dtype": x.dtype, "device": x.device}
    # p + p_k in pixels: output pixel (i, j) reads row i*s - p + ky*d, column j*s - p + kx*d, before its offset.
    tap_y = (torch.arange(k_h, **factory) * d_h).repeat_interleave(k_w)  # (K,), row-major taps
    tap_x = (torch.arange(k_w, **factory) * d_w).repeat(k_h)
    rows = torch.arange(h_out, **factory) * s_h - p_h
    cols = torch.arange(w_out, **factory) * s_w - p_w
    offset = offset.reshape(batch, taps, 2, h_out, w_out)
    y = rows.view(1, 1, h_out, 1) + tap_y.view(1, taps, 1, 1) + offset[:, :, 0]  # (B, K, H_out, W_out)
    x_pos = cols.view(1, 1, 1, w_out) + tap_x.view(1, taps, 1, 1) + offset[:, :, 1]
    grid = torch.stack(((2 * x_pos + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    sampled = F.grid_sample(x, grid.view(batch, taps * h_out, w_out, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (B, C_in, K * H_out, W_out)
    columns = sampled.reshape(batch, c_in, taps, h_out * w_out) * mask.reshape(batch, 1, taps, h_out * w_out)
    out = torch.matmul(weight.reshape(c_out, c_in * taps), columns.reshape(batch, c_in * taps, h_out * w_out))
    return out.view(batch, c_out, h_out, w_out)


def _pair(value: int | Pair) -> Pair:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _out_size(height: int, width: int, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """The output size of a convolution with these settings (``nn.Conv2d``'s formula)."""
    return tuple(  # type: ignore[return-value]
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip((height, width), kernel, stride, padding, dilation)
    )


def _check_shapes(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, want: Pair) -> None:
    """Shape errors name the tensor at fault instead of surfacing as a reshape failure deep inside."""
    batch, taps = x.shape[0], weight.shape[2] * weight.shape[3]
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} input channels, x has {x.shape[1]}")
    if tuple(offset.shape) != (batch, 2 * taps, *want):
        raise ValueError(f"offset must be {(batch, 2 * taps, *want)}, got {tuple(offset.shape)}")
    if tuple(mask.shape) != (batch, taps, *want):
        raise ValueError(f"mask must be {(batch, taps, *want)}, got {tuple(mask.shape)}")
