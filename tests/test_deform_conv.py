"""DCNv2 (mrsynth.ops.deform_conv, mrsynth.models.deform) against its definition, F.conv2d and torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mrsynth.models.deform import DeformConv2d
from mrsynth.ops.deform_conv import deform_conv2d, deform_conv2d_reference, reference_only, torchvision_status

F64 = torch.float64


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def random_case(seed: int, batch: int = 2, c_in: int = 3, c_out: int = 4, size: tuple[int, int] = (5, 6),
                stride: int = 1, padding: int = 1, dilation: int = 1, spread: float = 2.0) -> dict:
    """Seeded float64 inputs; offsets up to ``spread`` px so that some taps land between pixels or off the image."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    h_out = (height + 2 * padding - 2 * dilation - 1) // stride + 1
    w_out = (width + 2 * padding - 2 * dilation - 1) // stride + 1
    return {
        "x": torch.randn(batch, c_in, height, width, generator=g, dtype=F64),
        "offset": (torch.rand(batch, 18, h_out, w_out, generator=g, dtype=F64) * 2 - 1) * spread,
        "mask": torch.rand(batch, 9, h_out, w_out, generator=g, dtype=F64),
        "weight": torch.randn(c_out, c_in, 3, 3, generator=g, dtype=F64),
        "stride": stride, "padding": padding, "dilation": dilation,
    }


def bilinear(image: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """x(p) at a fractional position, zero outside the image: the DCN papers' G(q, p) summed over pixels q."""
    height, width = image.shape[-2:]
    value = torch.zeros(image.shape[0], dtype=image.dtype)
    for qy in (math.floor(y), math.floor(y) + 1):
        for qx in (math.floor(x), math.floor(x) + 1):
            if 0 <= qy < height and 0 <= qx < width:
                value = value + max(0.0, 1 - abs(y - qy)) * max(0.0, 1 - abs(x - qx)) * image[:, qy, qx]
    return value


def dcnv2_loop(x, offset, mask, weight, stride, padding, dilation) -> torch.Tensor:
    """DCNv2 (Zhu et al. 2019, Eq. 3) one output pixel and tap at a time: y(p) = sum_k w_k x(p + p_k + dp_k) m_k."""
    batch, _, h_out, w_out = mask.shape
    out = torch.zeros(batch, weight.shape[0], h_out, w_out, dtype=x.dtype)
    for b in range(batch):
        for i in range(h_out):
            for j in range(w_out):
                for k in range(9):
                    ky, kx = divmod(k, 3)
                    y = i * stride - padding + ky * dilation + offset[b, 2 * k, i, j].item()
                    x_pos = j * stride - padding + kx * dilation + offset[b, 2 * k + 1, i, j].item()
                    sample = bilinear(x[b], y, x_pos) * mask[b, k, i, j]
                    out[b, :, i, j] += weight[:, :, ky, kx] @ sample
    return out


@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 0, 1)])
def test_zero_offsets_and_unit_masks_are_a_plain_convolution(stride: int, padding: int, dilation: int) -> None:
    case = random_case(0, size=(9, 11), stride=stride, padding=padding, dilation=dilation)
    case["offset"].zero_()
    case["mask"].fill_(1)
    got = deform_conv2d_reference(**case)
    want = F.conv2d(case["x"], case["weight"], stride=stride, padding=padding, dilation=dilation)
    assert got.shape == want.shape
    assert rel_err(got, want) < 1e-12


@pytest.mark.parametrize("seed, size, stride, padding, dilation", [
    (1, (5, 6), 1, 1, 1), (2, (7, 5), 2, 1, 1), (3, (6, 6), 1, 2, 2), (4, (1, 4), 1, 1, 1),
])
def test_random_offsets_match_the_per_pixel_definition(seed: int, size: tuple[int, int], stride: int, padding: int,
                                                       dilation: int) -> None:
    case = random_case(seed, size=size, stride=stride, padding=padding, dilation=dilation)
    want = dcnv2_loop(**case)
    assert want.abs().max() > 0.1  # the comparison is not between zeros
    assert rel_err(deform_conv2d_reference(**case), want) < 1e-12


def test_integer_offsets_shift_the_taps() -> None:
    """An offset of exactly (+1 row, -2 columns) everywhere reads the zero-padded image shifted by that much."""
    case = random_case(5, size=(8, 8))
    case["offset"][:, 0::2] = 1.0
    case["offset"][:, 1::2] = -2.0
    case["mask"].fill_(1)
    # Tap (ky, kx) of output (i, j) reads x[i + ky, j + kx - 3]: x zero-padded by 3, valid conv, window shifted.
    want = F.conv2d(F.pad(case["x"], (3, 3, 3, 3)), case["weight"])[:, :, 3:11, 0:8]
    assert rel_err(deform_conv2d_reference(**case), want) < 1e-12


def test_shape_errors_name_the_tensor() -> None:
    case = random_case(6)
    case["mask"] = case["mask"][:, :8]
    with pytest.raises(ValueError, match="mask"):
        deform_conv2d_reference(**case)


def test_gradcheck() -> None:
    case = random_case(7, batch=1, c_in=2, c_out=2, size=(3, 4), spread=1.5)
    inputs = tuple(case[name].requires_grad_() for name in ("x", "offset", "mask", "weight"))
    settings = {name: case[name] for name in ("stride", "padding", "dilation")}
    assert torch.autograd.gradcheck(lambda x, o, m, w: deform_conv2d_reference(x, o, m, w, **settings), inputs)


def test_module_starts_as_half_the_convolution_it_replaces() -> None:
    """DCNv2's zero-initialised offset/mask conv: regular grid, every tap modulated by sigmoid(0) = 1/2."""
    torch.manual_seed(0)
    module = DeformConv2d(4, 6).double()
    x = torch.randn(2, 4, 7, 9, dtype=F64)
    with reference_only():
        got = module(x)
    assert rel_err(got, 0.5 * F.conv2d(x, module.weight, padding=1)) < 1e-12


def test_module_gradients_reach_the_offset_predictor() -> None:
    """Zero-initialised offsets must still learn: the offset conv gets a non-zero gradient on the first step."""
    torch.manual_seed(1)
    module = DeformConv2d(3, 3)
    with reference_only():
        module(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert module.offset_mask.weight.grad.abs().max() > 0


@pytest.mark.gpu
def test_matches_torchvision() -> None:
    usable, detail = torchvision_status()
    if not usable:
        pytest.skip(detail)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    case = random_case(8, size=(9, 10), stride=2, padding=2, dilation=2)
    tensors = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in case.items()}
    got = deform_conv2d(**tensors)  # torchvision's kernel
    with reference_only():
        want = deform_conv2d(**tensors)
    assert rel_err(got.cpu(), want.cpu()) < 1e-10


def test_a_torchvision_that_fails_at_import_means_the_plain_path(tmp_path, monkeypatch) -> None:
    """PyPI's torchvision for the CPU torch 2.13.0 raises at import; that must select the plain path, not fail."""
    import sys

    from mrsynth.ops import deform_conv

    broken = tmp_path / "torchvision"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    deform_conv.torchvision_status.cache_clear()
    try:
        usable, detail = deform_conv.torchvision_status()
        assert not usable and "torchvision::nms" in detail
        case = random_case(9)
        assert torch.equal(deform_conv2d(**case), deform_conv2d_reference(**case))
    finally:
        deform_conv.torchvision_status.cache_clear()
