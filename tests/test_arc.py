"""Adaptive Rotated Convolution (mrsynth.models.arc): kernel rotation, combination, gradients, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mrsynth.models.arc import AdaptiveRotatedConv2d, adaptive_kernels, rotation_matrix

F64 = torch.float64


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def rotate(kernel: torch.Tensor, angle: float) -> torch.Tensor:
    return (rotation_matrix(torch.tensor(angle, dtype=F64), 3) @ kernel.flatten()).view(3, 3)


def test_zero_angle_is_the_identity_and_a_right_angle_is_rot90() -> None:
    kernel = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert torch.equal(rotation_matrix(torch.zeros((), dtype=F64), 3), torch.eye(9, dtype=F64))
    assert rel_err(rotate(kernel, math.pi / 2), torch.rot90(kernel, 1, (0, 1))) < 1e-12
    assert rel_err(rotate(kernel, -math.pi / 2), torch.rot90(kernel, -1, (0, 1))) < 1e-12


@pytest.mark.parametrize("angle", [0.5, -0.3])
def test_rotation_reads_the_kernel_at_rotated_and_clamped_grid_points(angle: float) -> None:
    """Row p of Rot(theta) holds the bilinear weights of the 3x3 grid at R(theta) p (clamped onto the square), e.g.
    the top-middle tap (x, y) = (0, -1) reads (sin t, -cos t); the top-left corner (-1, -1) reads the top row at
    x = sin t - cos t (theta > 0) or the left column at y = -(cos t + sin t) (theta < 0)."""
    m = rotation_matrix(torch.tensor(angle, dtype=F64), 3)
    c, s = math.cos(angle), math.sin(angle)
    top_mid = torch.zeros(9, dtype=F64)
    lo = -1 if s < 0 else 0  # left neighbour column of x = sin t
    fx = s - lo
    top_mid[0 * 3 + lo + 1], top_mid[0 * 3 + lo + 2] = c * (1 - fx), c * fx  # row y = -1 gets weight cos t
    top_mid[1 * 3 + lo + 1], top_mid[1 * 3 + lo + 2] = (1 - c) * (1 - fx), (1 - c) * fx  # row y = 0: 1 - cos t
    assert torch.allclose(m[1], top_mid, rtol=0, atol=1e-15)
    corner = torch.zeros(9, dtype=F64)
    if angle > 0:
        corner[0], corner[1] = c - s, 1 - (c - s)
    else:
        corner[0], corner[3] = c + s, 1 - (c + s)
    assert torch.allclose(m[0], corner, rtol=0, atol=1e-15)
    assert torch.allclose(m.sum(dim=1), torch.ones(9, dtype=F64), rtol=0, atol=1e-15)


def test_zero_angles_give_the_weighted_sum_of_the_kernels_convolutions() -> None:
    torch.manual_seed(0)
    module = AdaptiveRotatedConv2d(4, 5, kernels=3).double().eval()
    torch.nn.init.zeros_(module.routing.angle_head.weight)  # theta_i = 0 for every input
    x = torch.randn(2, 4, 7, 6, dtype=F64)
    _, combination = module.routing(x)
    assert combination.std() > 0  # distinct weights per sample and kernel
    want = torch.stack([
        sum(combination[b, i] * F.conv2d(x[b : b + 1], module.weight[i], padding=1) for i in range(3))[0]
        for b in range(2)
    ])
    assert rel_err(module(x), want) < 1e-12


def test_rotated_kernels_combine_per_sample() -> None:
    """W~_b = sum_i lambda_bi Rot(W_i; theta_bi) against a loop over samples and kernels."""
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(3, 2, 4, 3, 3, generator=g, dtype=F64)
    angles = (torch.rand(2, 3, generator=g, dtype=F64) - 0.5) * 1.2
    combination = torch.rand(2, 3, generator=g, dtype=F64)
    got = adaptive_kernels(weight, angles, combination)
    for b in range(2):
        want = sum(combination[b, i] * (weight[i].reshape(8, 9) @ rotation_matrix(angles[b, i], 3).T).view(2, 4, 3, 3)
                   for i in range(3))
        assert rel_err(got[b], want) < 1e-12


def test_gradcheck_through_angles_combination_and_weights() -> None:
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(2, 2, 2, 3, 3, generator=g, dtype=F64, requires_grad=True)
    # Angles away from the kinks of the bilinear map (0 and where a corner's clamp starts, also at 0 for 3x3).
    angles = torch.tensor([[0.3, -0.5], [0.6, -0.2]], dtype=F64, requires_grad=True)
    combination = torch.rand(2, 2, generator=g, dtype=F64, requires_grad=True)
    x = torch.randn(2, 2, 5, 4, generator=g, dtype=F64, requires_grad=True)

    def arc(x, weight, angles, combination):
        kernels = adaptive_kernels(weight, angles, combination)
        return torch.cat([F.conv2d(x[b : b + 1], kernels[b], padding=1) for b in range(2)])

    assert torch.autograd.gradcheck(arc, (x, weight, angles, combination))


def test_module_gradcheck_and_routing_gets_gradients() -> None:
    torch.manual_seed(3)
    module = AdaptiveRotatedConv2d(2, 2, kernels=2).double().eval()
    x = torch.randn(2, 2, 5, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))
    module(x).square().mean().backward()
    assert module.routing.angle_head.weight.grad.abs().max() > 0
    assert module.routing.combination_head.weight.grad.abs().max() > 0
