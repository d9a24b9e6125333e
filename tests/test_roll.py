"""The rolled kernel (Eq. 4) against a literal per-sample, per-group loop over torch.roll, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mrsynth.models.cagr import CAGR
from mrsynth.models.roll import per_sample_conv2d, rolled_kernel_reference


def loop_reference(weight: torch.Tensor, offsets: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The paper's wording: four integer rolls of each group's kernel, bilinear blend, times lambda."""
    c_in = weight.shape[1]
    batch, groups, _ = offsets.shape
    size = c_in // groups
    samples = []
    for b in range(batch):
        parts = []
        for g in range(groups):
            w = weight[:, g * size : (g + 1) * size]
            ox, oy = offsets[b, g, 0].item(), offsets[b, g, 1].item()
            sx, sy = math.floor(ox), math.floor(oy)
            fx, fy = ox - sx, oy - sy

            def roll(dy: int, dx: int) -> torch.Tensor:
                return torch.roll(w, shifts=(sy + dy, sx + dx), dims=(-2, -1))

            blend = (1 - fx) * (1 - fy) * roll(0, 0) + fx * (1 - fy) * roll(0, 1) + (1 - fx) * fy * roll(1, 0) + fx * fy * roll(1, 1)
            parts.append(scale[b, g].item() * blend)
        samples.append(torch.cat(parts, dim=1))
    return torch.stack(samples)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("k", [3, 4, 5])
@pytest.mark.parametrize("groups", [1, 8])
@pytest.mark.parametrize("magnitude", [0.9, 2.5, 7.0])  # within the kernel, beyond it (|o| > k)
def test_matches_loop_over_torch_roll(k: int, groups: int, magnitude: float) -> None:
    gen = torch.Generator().manual_seed(1000 * k + 10 * groups + int(magnitude * 10))
    weight = torch.randn(6, 16, k, k, generator=gen, dtype=torch.float64)
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(3 * groups)[: 3 * groups * 2].view(3, groups, 2)
    offsets = signs * magnitude * (0.5 + 0.5 * torch.rand(3, groups, 2, generator=gen, dtype=torch.float64))
    scale = torch.rand(3, groups, generator=gen, dtype=torch.float64)
    result = rolled_kernel_reference(weight, offsets, scale)
    assert relative_error(result, loop_reference(weight, offsets, scale)) < 1e-12


def test_integer_offsets_reproduce_torch_roll_exactly() -> None:
    gen = torch.Generator().manual_seed(7)
    weight = torch.randn(4, 8, 3, 3, generator=gen, dtype=torch.float64)
    offsets = torch.tensor([[[2.0, -1.0], [-4.0, 3.0]]], dtype=torch.float64)
    result = rolled_kernel_reference(weight, offsets, torch.ones(1, 2, dtype=torch.float64))
    expected = torch.cat(
        [torch.roll(weight[:, :4], (-1, 2), (-2, -1)), torch.roll(weight[:, 4:], (3, -4), (-2, -1))], dim=1
    )
    assert torch.equal(result[0], expected)


def test_zero_offset_unit_scale_is_plain_convolution() -> None:
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(5, 8, 3, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 8, 12, 12, generator=gen, dtype=torch.float64)
    kernels = rolled_kernel_reference(weight, torch.zeros(2, 4, 2, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64))
    assert torch.equal(kernels, weight.expand(2, -1, -1, -1, -1))
    # One sample takes the plain conv path: bit-identical. Several run as one grouped conv, whose summation
    # order may differ from F.conv2d's, so there the check is to float64 rounding.
    assert torch.equal(per_sample_conv2d(x[:1], kernels[:1], padding=1), F.conv2d(x[:1], weight, padding=1))
    assert relative_error(per_sample_conv2d(x, kernels, padding=1), F.conv2d(x, weight, padding=1)) < 1e-13


def test_gradcheck_weight_offsets_scale_and_input() -> None:
    gen = torch.Generator().manual_seed(11)
    weight = torch.randn(3, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    # Keep offsets away from integers, where floor() jumps and finite differences are meaningless.
    base = torch.randint(-4, 4, (2, 2, 2), generator=gen).double()
    offsets = (base + 0.2 + 0.6 * torch.rand(2, 2, 2, generator=gen, dtype=torch.float64)).requires_grad_()
    scale = torch.rand(2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)

    def rolled_conv(w, o, s, inp):
        return per_sample_conv2d(inp, rolled_kernel_reference(w, o, s), padding=1)

    assert torch.autograd.gradcheck(rolled_conv, (weight, offsets, scale, x))


def test_fresh_cagr_moves_its_offsets() -> None:
    """floor+1 (not ceil): at the zero-initialised offsets the gradient must not vanish."""
    torch.manual_seed(0)
    module = CAGR(16, 16, groups=8)
    x = torch.randn(2, 16, 10, 10)
    target = torch.randn(2, 16, 10, 10)
    (module(x) - target).square().mean().backward()
    grad = module.routing.offset_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert module.routing.scale_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_per_sample_conv_equals_loop(batch: int) -> None:
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 6, 9, 11, generator=gen, dtype=torch.float64)
    kernels = torch.randn(batch, 4, 6, 3, 3, generator=gen, dtype=torch.float64)
    for stride, padding in [(1, 1), (2, 0)]:
        result = per_sample_conv2d(x, kernels, stride=stride, padding=padding)
        expected = torch.cat([F.conv2d(x[b : b + 1], kernels[b], stride=stride, padding=padding) for b in range(batch)])
        assert relative_error(result, expected) < 1e-12
