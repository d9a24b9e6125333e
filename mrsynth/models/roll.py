"""Group-wise rolled kernels (paper Eq. 3-4) and the per-sample convolution that uses them.

Rolling a k x k kernel circularly by a float offset o is linear in the kernel, so along one axis it is a
k x k matrix R(o) = (1 - f) P^s + f P^(s+1), with s = floor(o), f = o - s and P^s the circulant matrix of
``torch.roll(., s)``. The rolled kernel of group i is then W~_i = lambda_i * R(oy_i) W_i R(ox_i)^T: one batched
product for all samples and groups, differentiable by autograd.

Why floor + 1 rather than ceil (the paper writes c(.)): both give the same values, but with ceil the two rolls
coincide at integer offsets and d W~ / d o vanishes there; the offset head starts at exactly 0, so with ceil the
offsets would never move.

Backends: on a GPU with CuPy the same operation runs as one CUDA kernel (``mrsynth.ops``); the torch version here
is the reference it is tested against. ``MRSYNTH_ROLL_BACKEND=torch|cuda|auto`` forces a choice.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from mrsynth.errors import InputError

ROLL_BACKENDS = ("auto", "torch", "cuda")


def roll_matrix(offset: Tensor, size: int) -> Tensor:
    """R(o): ``R @ v`` rolls v circularly by the float offset o (``torch.roll``'s sign), blending floor and floor+1.

    ``offset`` has any shape S; the result has shape S + (size, size).
    """
    shift = torch.floor(offset)
    frac = (offset - shift)[..., None, None]
    rows = torch.arange(size, device=offset.device)
    # P^s[j, m] = 1 where m == (j - s) mod size, i.e. (P^s v)[j] = v[j - s] as torch.roll(v, s) does.
    source = (rows[:, None] - shift.long()[..., None, None]) % size
    cols = rows[None, :]
    p_s = (source == cols).to(offset.dtype)
    p_s1 = ((source - 1) % size == cols).to(offset.dtype)
    return (1 - frac) * p_s + frac * p_s1


def rolled_kernel_reference(weight: Tensor, offsets: Tensor, scale: Tensor) -> Tensor:
    """Eq. 4 in torch: per-sample kernels lambda_i * FloatRoll(w_i, (ox_i, oy_i)).

    weight: (C_out, C_in, k_h, k_w), shared by all samples; groups are contiguous C_in slices (Eq. 3).
    offsets: (B, n, 2) with (ox, oy): x rolls the kernel's width (last) axis, y its height axis.
    scale: (B, n), the group scale factors lambda.
    Returns (B, C_out, C_in, k_h, k_w).

    Rolling both axes of a k_h x k_w kernel is one (k_h k_w) x (k_h k_w) matrix, kron(R(oy), R(ox)), so with
    lambda folded in, every sample's kernels come from one batched product against the unpermuted weight.
    """
    c_out, c_in, k_h, k_w = weight.shape
    batch, groups, _ = offsets.shape
    r_x = roll_matrix(offsets[..., 0], k_w)  # (B, n, k_w, k_w)
    r_y = roll_matrix(offsets[..., 1], k_h)  # (B, n, k_h, k_h)
    mix = torch.einsum("bgyp,bgxq->bgyxpq", r_y, r_x).reshape(batch, groups, k_h * k_w, k_h * k_w)
    mix = mix * scale[..., None, None]
    w = weight.reshape(1, c_out, groups, c_in // groups, k_h * k_w)
    rolled = torch.matmul(w, mix.transpose(-1, -2).unsqueeze(1))  # (B, C_out, n, C_in/n, k_h k_w)
    return rolled.reshape(batch, c_out, c_in, k_h, k_w)


def roll_backend() -> str:
    """The backend asked for by ``MRSYNTH_ROLL_BACKEND`` (default ``auto``)."""
    backend = os.environ.get("MRSYNTH_ROLL_BACKEND", "auto").strip().lower() or "auto"
    if backend not in ROLL_BACKENDS:
        raise InputError("MRSYNTH_ROLL_BACKEND", f"unknown backend {backend!r}", f"choose one of {', '.join(ROLL_BACKENDS)}")
    return backend


def rolled_kernel(weight: Tensor, offsets: Tensor, scale: Tensor) -> Tensor:
    """Eq. 4 through the active backend (see :func:`roll_backend`)."""
    backend = roll_backend()
    if backend != "torch" and weight.is_cuda:
        from mrsynth.ops import CUDA_ROLL_DTYPES, cuda_roll_available, rolled_kernel_cuda

        if weight.dtype not in CUDA_ROLL_DTYPES:  # float64: the reference's own precision
            return rolled_kernel_reference(weight, offsets, scale)
        if cuda_roll_available():
            return rolled_kernel_cuda(weight, offsets, scale)
        if backend == "cuda":
            raise RuntimeError("MRSYNTH_ROLL_BACKEND=cuda but the CuPy roll kernel is not usable here")
    elif backend == "cuda":
        raise RuntimeError("MRSYNTH_ROLL_BACKEND=cuda needs CUDA tensors")
    return rolled_kernel_reference(weight, offsets, scale)


def per_sample_conv2d(x: Tensor, kernels: Tensor, stride: int = 1, padding: int = 0) -> Tensor:
    """Convolve each sample with its own kernel: x (B, C_in, H, W), kernels (B, C_out, C_in, k, k).

    On a GPU, folding the batch into channels and running one convolution with ``groups=B`` keeps the device busy.
    On the CPU that grouped path is slower than one oneDNN convolution per sample (it also forces channels-last
    activations back to NCHW), so there the samples run one after another.
    """
    batch, c_in, height, width = x.shape
    if batch == 1:
        return F.conv2d(x, kernels[0], stride=stride, padding=padding)
    if not x.is_cuda:
        return torch.cat([F.conv2d(x[b : b + 1], kernels[b], stride=stride, padding=padding) for b in range(batch)])
    c_out = kernels.shape[1]
    out = F.conv2d(
        x.reshape(1, batch * c_in, height, width),
        kernels.reshape(batch * c_out, *kernels.shape[2:]),
        stride=stride,
        padding=padding,
        groups=batch,
    )
    return out.view(batch, c_out, *out.shape[2:])
