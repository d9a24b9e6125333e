"""CAGR's optimised forward (channels-last LayerNorm, kron-matrix kernel building, per-sample conv dispatch)
against a literal, unoptimised transcription of the paper's equations, sharing the same parameters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mrsynth.models.cagr import CAGR


def literal_cagr(module: CAGR, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1-4 as written: loops over samples and groups, torch.roll, NCHW LayerNorm by hand."""
    n = module.groups
    batch, channels = x.shape[:2]
    size = channels // n
    att = module.attention
    z = x.mean(dim=(2, 3))
    z_s = z.view(batch, n, size).transpose(1, 2).reshape(batch, channels)
    pairs = torch.cat([torch.cat([z[:, i * size : (i + 1) * size], z_s[:, i * size : (i + 1) * size]], 1) for i in range(n)], 1)
    attention = torch.sigmoid(F.conv2d(pairs[:, :, None, None], att.fuse.weight, att.fuse.bias, groups=n))
    x = x * attention  # Eq. 2
    h = x
    for layer in range(2):
        conv, norm = module.routing.stem[3 * layer], module.routing.stem[3 * layer + 1]
        h = F.conv2d(h, conv.weight, conv.bias, padding=1, groups=n)
        mean = h.mean(1, keepdim=True)
        var = (h - mean).square().mean(1, keepdim=True)
        h = (h - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None, None] + norm.bias[:, None, None]
        h = F.gelu(h)
    v = h.mean(dim=(2, 3))
    offsets = (v @ module.routing.offset_head.weight.T).view(batch, n, 2)
    scale = torch.sigmoid(v @ module.routing.scale_head.weight.T + module.routing.scale_head.bias)
    outputs = []
    for b in range(batch):
        parts = []
        for i in range(n):
            w = module.weight[:, i * size : (i + 1) * size]
            ox, oy = offsets[b, i].tolist()
            sx, sy = math.floor(ox), math.floor(oy)
            fx, fy = ox - sx, oy - sy
            roll = lambda dy, dx: torch.roll(w, (sy + dy, sx + dx), (-2, -1))  # noqa: E731
            parts.append(scale[b, i] * ((1 - fx) * (1 - fy) * roll(0, 0) + fx * (1 - fy) * roll(0, 1)
                                        + (1 - fx) * fy * roll(1, 0) + fx * fy * roll(1, 1)))
        outputs.append(F.conv2d(x[b : b + 1], torch.cat(parts, 1), padding=1))
    return torch.cat(outputs)


def randomised_cagr(channels: int, groups: int, seed: int) -> CAGR:
    """A CAGR with non-trivial heads (fresh ones give zero offsets, which would hide rolling bugs)."""
    torch.manual_seed(seed)
    module = CAGR(channels, channels, groups=groups)
    with torch.no_grad():
        module.routing.offset_head.weight.normal_(0, 3.0)
        module.routing.scale_head.weight.normal_(0, 1.0)
        for norm in (module.routing.stem[1], module.routing.stem[4]):
            norm.weight.normal_(1, 0.2)
            norm.bias.normal_(0, 0.2)
    return module


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("channels", "groups", "width"),
    [(16, 8, 24), (8, 8, 27), (32, 8, 5), (64, 8, 27), (128, 8, 13), (96, 3, 27), (48, 2, 13)],
    ids=["2-per-group", "1-per-group", "4-per-group", "8-per-group", "16-per-group", "32-per-group", "24-per-group"],
)
def test_optimised_forward_matches_literal_equations(
    batch: int, channels_last: bool, channels: int, groups: int, width: int
) -> None:
    """Covers every form of the fused CPU routing stem (1-8 and multiples of 16 channels per group; widths that
    leave a partial pixel tile at the right edge, or fit in one) and the PyTorch stem it falls back to (24)."""
    module = randomised_cagr(channels, groups, seed=batch)
    x = torch.randn(batch, channels, 20, width, generator=torch.Generator().manual_seed(5))
    reference = literal_cagr(module.double(), x.double())
    module.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        result = module(x)
    assert ((result.double() - reference).norm() / reference.norm()).item() < 1e-5
    with torch.no_grad():
        result64 = module.double()(x.double())
    assert ((result64 - reference).norm() / reference.norm()).item() < 1e-12


@pytest.mark.parametrize("channels, groups", [(8, 8), (16, 8), (32, 8)])  # 1 and 2 per group: dense form; 4: grouped
def test_grouped_conv_equals_torch_grouped_conv_with_gradients(channels: int, groups: int) -> None:
    from mrsynth.models.cagr import GroupedConv2d

    torch.manual_seed(channels)
    conv = GroupedConv2d(channels, channels, 3, padding=1, groups=groups).double()
    x = torch.randn(2, channels, 9, 11, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    reference = F.conv2d(x, conv.weight, conv.bias, padding=1, groups=groups)
    assert ((out - reference).norm() / reference.norm()).item() < 1e-13
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), (x, conv.weight, conv.bias))
    expected = torch.autograd.grad((reference * probe).sum(), (x, conv.weight, conv.bias))
    for got, want in zip(grads, expected):
        assert ((got - want).norm() / want.norm()).item() < 1e-13
