"""The CUDA kernels' arithmetic on the CPU: cuda/group_roll.cuh built with g++ (tests/roll_shim.cpp) against torch.

The shim runs the same per-element functions as the GPU kernels (forward value, weight gradient, per-group
offset/scale sums, 16-bit conversions), so index mistakes (modulo of negative or large offsets, floor+1 sides,
swapped axes, group boundaries, reduction chunk bounds) show up here without a GPU. Its emulator runs each
(block, thread) of the kernels' grids through the same per-thread functions, which lets the Python launcher and
autograd Function (mrsynth.ops.cupy_roll) run end to end on CPU tensors: argument order, grid sizes, block
roles, partial sums and dtypes are checked here too. Only NVRTC, the block-wide sum and the stream are left to
the GPU tests (tests/test_cuda_roll.py, benchmarks/gpu_check.py).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mrsynth.models.roll import rolled_kernel_reference

REPO = Path(__file__).resolve().parents[1]
SHIM = Path(__file__).with_name("roll_shim.cpp")

P = ctypes.c_void_p
I = ctypes.c_int
SIGNATURES = {
    "shim_forward_f64": [P, P, P, P] + [I] * 6,
    "shim_backward_f64": [P] * 7 + [I] * 7,
    "shim_forward_f32": [P, P, P, P] + [I] * 6,
    "shim_backward_f32": [P] * 7 + [I] * 7,
    "shim_forward_f16": [P, P, P, P] + [I] * 6,
    "shim_forward_bf16": [P, P, P, P] + [I] * 6,
    "shim_backward_bf16": [P] * 7 + [I] * 7,
    "shim_float_to_half": [P, P, ctypes.c_longlong],
    "shim_half_to_float": [P, P, ctypes.c_longlong],
    "shim_float_to_bf16": [P, P, ctypes.c_longlong],
    "shim_bf16_to_float": [P, P, ctypes.c_longlong],
}
for _suffix in ("f32", "f16", "bf16"):
    SIGNATURES[f"emulate_group_roll_forward_{_suffix}"] = [I, I, I] + [P] * 4 + [I] * 6
    SIGNATURES[f"emulate_group_roll_backward_{_suffix}"] = [I, I] + [P] * 6 + [I] * 8


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not found")
    library = tmp_path_factory.mktemp("shim") / "roll_shim.so"
    # No -ffast-math: the half conversion relies on IEEE round-to-nearest-even adds.
    subprocess.run(
        [compiler, "-O1", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
         f"-I{REPO / 'cuda'}", "-o", str(library), str(SHIM)],
        check=True,
        capture_output=True,
        text=True,
    )
    lib = ctypes.CDLL(str(library))
    for name, argtypes in SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib


def ptr(array: np.ndarray) -> int:
    assert array.flags["C_CONTIGUOUS"]
    return array.ctypes.data


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def random_problem(k_h: int, k_w: int, groups: int, batch: int, magnitude: float, seed: int, c_out: int = 6):
    """Weights, offsets of both signs spanning (-magnitude, magnitude) plus a large negative one, lambdas."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(c_out, 2 * groups, k_h, k_w, generator=gen, dtype=torch.float64)
    offsets = (2 * torch.rand(batch, groups, 2, generator=gen, dtype=torch.float64) - 1) * magnitude
    offsets[0, 0] = torch.tensor([-3.5 * max(k_h, k_w) - 0.3, 2.7 * max(k_h, k_w) + 0.6])  # |o| > k, both signs
    scale = 0.2 + torch.rand(batch, groups, generator=gen, dtype=torch.float64)
    return weight, offsets, scale


def shim_forward(lib: ctypes.CDLL, suffix: str, weight: np.ndarray, offsets: np.ndarray, scale: np.ndarray,
                 groups: int) -> np.ndarray:
    c_out, c_in, k_h, k_w = weight.shape
    batch = offsets.shape[0]
    out = np.empty((batch, c_out, c_in, k_h, k_w), dtype=weight.dtype)
    getattr(lib, f"shim_forward_{suffix}")(ptr(weight), ptr(offsets), ptr(scale), ptr(out), batch, c_out, c_in,
                                           groups, k_h, k_w)
    return out


def shim_backward(lib: ctypes.CDLL, suffix: str, weight: np.ndarray, offsets: np.ndarray, scale: np.ndarray,
                  grad_out: np.ndarray, groups: int, parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c_out, c_in, k_h, k_w = weight.shape
    batch = offsets.shape[0]
    grad_weight = np.empty_like(weight)
    grad_offsets = np.empty_like(offsets)
    grad_scale = np.empty_like(scale)
    getattr(lib, f"shim_backward_{suffix}")(ptr(weight), ptr(offsets), ptr(scale), ptr(grad_out), ptr(grad_weight),
                                            ptr(grad_offsets), ptr(grad_scale), batch, c_out, c_in, groups, k_h,
                                            k_w, parts)
    return grad_weight, grad_offsets, grad_scale


def reference_grads(weight, offsets, scale, grad_out):
    w, o, s = (t.clone().requires_grad_() for t in (weight, offsets, scale))
    rolled_kernel_reference(w, o, s).backward(grad_out)
    return w.grad, o.grad, s.grad


CASES = [  # (k_h, k_w, groups, batch, magnitude)
    (3, 3, 1, 1, 0.9),
    (3, 3, 8, 3, 7.0),
    (4, 4, 1, 3, 2.5),
    (4, 4, 8, 1, 9.0),
    (5, 5, 8, 3, 2.5),
    (5, 5, 1, 3, 12.0),
    (3, 5, 8, 2, 6.0),  # non-square: catches swapped axes
]


@pytest.mark.parametrize(("k_h", "k_w", "groups", "batch", "magnitude"), CASES)
def test_forward_matches_reference_float64(shim, k_h, k_w, groups, batch, magnitude) -> None:
    weight, offsets, scale = random_problem(k_h, k_w, groups, batch, magnitude, seed=k_h * 100 + k_w * 10 + groups)
    out = shim_forward(shim, "f64", weight.numpy(), offsets.numpy(), scale.numpy(), groups)
    assert relative_error(torch.from_numpy(out), rolled_kernel_reference(weight, offsets, scale)) < 1e-13


def test_integer_offsets_are_exact_rolls(shim) -> None:
    weight, _, _ = random_problem(3, 4, 2, 1, 1.0, seed=5)
    offsets = torch.tensor([[[-7.0, 5.0], [2.0, -1.0]]], dtype=torch.float64)
    out = shim_forward(shim, "f64", weight.numpy(), offsets.numpy(), np.ones((1, 2)), 2)
    expected = torch.cat([torch.roll(weight[:, :2], (5, -7), (-2, -1)), torch.roll(weight[:, 2:], (-1, 2), (-2, -1))], 1)
    assert torch.equal(torch.from_numpy(out[0]), expected)


@pytest.mark.parametrize(("k_h", "k_w", "groups", "batch", "magnitude"), CASES)
@pytest.mark.parametrize("parts", [1, 3])
def test_backward_matches_autograd_float64(shim, k_h, k_w, groups, batch, magnitude, parts) -> None:
    weight, offsets, scale = random_problem(k_h, k_w, groups, batch, magnitude, seed=7 + k_h * k_w + groups)
    gen = torch.Generator().manual_seed(parts)
    grad_out = torch.randn(batch, *weight.shape, generator=gen, dtype=torch.float64)
    expected = reference_grads(weight, offsets, scale, grad_out)
    got = shim_backward(shim, "f64", weight.numpy(), offsets.numpy(), scale.numpy(), grad_out.numpy(), groups, parts)
    for name, g, e in zip(("weight", "offsets", "scale"), got, expected):
        assert relative_error(torch.from_numpy(g), e) < 1e-12, name


@pytest.mark.parametrize(("k_h", "k_w", "groups", "batch", "magnitude"), CASES[1::2])
def test_float32_instantiation(shim, k_h, k_w, groups, batch, magnitude) -> None:
    """The exact template the GPU runs for float32 weights, against the float64 oracle."""
    weight, offsets, scale = random_problem(k_h, k_w, groups, batch, magnitude, seed=31 + k_h)
    w32, o32, s32 = (t.float().numpy() for t in (weight, offsets, scale))
    oracle_in = [torch.from_numpy(a).double() for a in (w32, o32, s32)]
    out = shim_forward(shim, "f32", w32, o32, s32, groups)
    assert relative_error(torch.from_numpy(out), rolled_kernel_reference(*oracle_in)) < 1e-6
    grad_out = torch.randn(batch, *weight.shape, generator=torch.Generator().manual_seed(3)).numpy()
    expected = reference_grads(*oracle_in, torch.from_numpy(grad_out).double())
    got = shim_backward(shim, "f32", w32, o32, s32, grad_out, groups, parts=2)
    for name, g, e in zip(("weight", "offsets", "scale"), got, expected):
        assert relative_error(torch.from_numpy(g), e) < 1e-5, name


@pytest.mark.parametrize(("dtype", "suffix"), [(torch.float16, "f16"), (torch.bfloat16, "bf16")])
def test_half_storage_forward(shim, dtype, suffix) -> None:
    """16-bit weights, float32 sums, one rounding at the end: equals the rounded float64 result almost always."""
    weight, offsets, scale = random_problem(3, 3, 8, 3, 5.0, seed=77)
    w16 = weight.to(dtype)
    o32, s32 = offsets.float(), scale.float()
    out = shim_forward(shim, suffix, w16.view(torch.int16).numpy(), o32.numpy(), s32.numpy(), 8)
    got = torch.from_numpy(out).view(dtype)
    oracle = rolled_kernel_reference(w16.double(), o32.double(), s32.double())
    exact = (got == oracle.to(dtype)).double().mean().item()
    assert exact > 0.99, exact  # float32 sums may flip a rounding tie now and then, never more
    assert relative_error(got, oracle) < (1e-3 if dtype == torch.float16 else 8e-3)


def test_bf16_backward(shim) -> None:
    weight, offsets, scale = random_problem(3, 3, 8, 2, 4.0, seed=91)
    w16 = weight.to(torch.bfloat16)
    grad16 = torch.randn(2, *weight.shape, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    o32, s32 = offsets.float(), scale.float()
    got = shim_backward(shim, "bf16", w16.view(torch.int16).numpy(), o32.numpy(), s32.numpy(),
                        grad16.view(torch.int16).numpy(), 8, parts=2)
    expected = reference_grads(w16.double(), o32.double(), s32.double(), grad16.double())
    assert relative_error(torch.from_numpy(got[0]).view(torch.bfloat16), expected[0]) < 8e-3
    assert relative_error(torch.from_numpy(got[1]), expected[1]) < 1e-5  # float32 sums of exact bf16 inputs
    assert relative_error(torch.from_numpy(got[2]), expected[2]) < 1e-5


def conversion_inputs() -> torch.Tensor:
    gen = torch.Generator().manual_seed(2024)
    parts = [
        torch.randn(20000, generator=gen) * 10.0 ** torch.randint(-9, 6, (20000,), generator=gen).float(),
        torch.rand(5000, generator=gen) * 2.0**-14,  # half subnormals
        torch.rand(2000, generator=gen) * 2.0**-24,  # below the smallest half subnormal: round to 0 or 2^-24
        torch.linspace(65000.0, 66000.0, 2001),  # around half's max 65504 and the inf threshold 65520
        torch.tensor([0.0, -0.0, 65504.0, 65519.99, 65520.0, 2.0**-25, 3 * 2.0**-26, float("inf"), -float("inf"),
                      3.3895314e38, -3.4028235e38, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-8]),
    ]
    values = torch.cat(parts)
    # Exact rounding ties for half (10 mantissa bits kept) and bfloat16 (7 kept), both parities.
    ties = torch.tensor([(1 << 23) | (m << 13) | (1 << 12) for m in range(64)], dtype=torch.int32).view(torch.float32)
    ties_bf = torch.tensor([(127 << 23) | (m << 16) | (1 << 15) for m in range(64)], dtype=torch.int32).view(torch.float32)
    values = torch.cat([values, ties, ties_bf])
    return torch.cat([values, -values])


@pytest.mark.parametrize(("dtype", "to_name", "from_name"), [
    (torch.float16, "shim_float_to_half", "shim_half_to_float"),
    (torch.bfloat16, "shim_float_to_bf16", "shim_bf16_to_float"),
])
def test_16bit_conversions_match_torch_bit_for_bit(shim, dtype, to_name, from_name) -> None:
    values = conversion_inputs().contiguous().numpy()
    bits = np.empty(values.shape, dtype=np.uint16)
    getattr(shim, to_name)(ptr(values), ptr(bits), values.size)
    expected = torch.from_numpy(values).to(dtype).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(bits, expected)
    nan = np.array([np.nan, -np.nan], dtype=np.float32)
    nan_bits = np.empty(2, dtype=np.uint16)
    getattr(shim, to_name)(ptr(nan), ptr(nan_bits), 2)
    assert torch.from_numpy(nan_bits.view(np.int16)).view(dtype).isnan().all()

    every = np.arange(1 << 16, dtype=np.uint16)  # every 16-bit pattern widens exactly
    widened = np.empty(every.shape, dtype=np.float32)
    getattr(shim, from_name)(ptr(every), ptr(widened), every.size)
    expected_f = torch.from_numpy(every.view(np.int16)).view(dtype).float().numpy()
    is_nan = np.isnan(expected_f)
    assert np.array_equal(np.isnan(widened), is_nan)
    assert np.array_equal(widened[~is_nan].view(np.uint32), expected_f[~is_nan].view(np.uint32))


# ---------------------------------------------------------------------------------------------------------------
# The Python launcher and autograd Function, with the kernels emulated on the CPU.


@pytest.fixture
def emulated(shim, monkeypatch):
    """Route mrsynth.ops.cupy_roll's launches to the shim's emulator; returns the list of (kernel, grid) launched."""
    from mrsynth.ops import cupy_roll

    launches: list[tuple[str, tuple[int, int]]] = []

    def launch(name, device, grid, args):
        launches.append((name, grid))
        values = [int(a) for a in args]
        emulate = getattr(shim, f"emulate_{name}")
        if "forward" in name:
            emulate(grid[0], grid[1], cupy_roll.BLOCK, *values)
        else:
            emulate(grid[0], cupy_roll.BLOCK, *values)

    monkeypatch.setattr(cupy_roll, "_launch", launch)
    monkeypatch.setattr(cupy_roll, "_multiprocessors", lambda index: 132)  # an H100's count
    return launches


LAUNCH_CASES = [  # (c_out, c_in, k_h, k_w, groups, batch): parts = 3 for the first, 1 for the second
    (16, 64, 3, 3, 2, 3),
    (6, 16, 3, 5, 8, 2),
]


@pytest.mark.parametrize(("c_out", "c_in", "k_h", "k_w", "groups", "batch"), LAUNCH_CASES)
def test_autograd_function_through_emulated_kernels(emulated, c_out, c_in, k_h, k_w, groups, batch) -> None:
    from mrsynth.ops.cupy_roll import GroupRollFunction, reduction_parts

    gen = torch.Generator().manual_seed(c_in + k_w)
    weight = torch.randn(c_out, c_in, k_h, k_w, generator=gen)
    offsets = (2 * torch.rand(batch, groups, 2, generator=gen) - 1) * 9.0
    scale = 0.2 + torch.rand(batch, groups, generator=gen)
    grad_out = torch.randn(batch, c_out, c_in, k_h, k_w, generator=gen)
    leaves = [t.clone().requires_grad_() for t in (weight, offsets, scale)]

    out = GroupRollFunction.apply(*leaves)
    out.backward(grad_out)
    oracle_in = [t.double() for t in (weight, offsets, scale)]
    assert relative_error(out.detach(), rolled_kernel_reference(*oracle_in)) < 1e-6
    expected = reference_grads(*oracle_in, grad_out.double())
    for name, leaf, e in zip(("weight", "offsets", "scale"), leaves, expected):
        assert leaf.grad.dtype == torch.float32
        assert relative_error(leaf.grad, e) < 1e-5, name

    parts = reduction_parts(c_out * c_in // groups * k_h * k_w, batch * groups, 0)
    weight_blocks = -(-c_out * c_in * k_h * k_w // 256)
    suffix = "f32"
    assert emulated == [(f"group_roll_forward_{suffix}", (weight_blocks, batch)),
                        (f"group_roll_backward_{suffix}", (weight_blocks + batch * groups * parts, 1))]
    assert parts == (3 if groups == 2 else 1)


@pytest.mark.parametrize("wanted", ["weight", "offsets", "scale"])
def test_backward_launches_only_the_blocks_needed(emulated, wanted) -> None:
    from mrsynth.ops.cupy_roll import GroupRollFunction

    gen = torch.Generator().manual_seed(1)
    weight, offsets, scale = torch.randn(8, 16, 3, 3, generator=gen), torch.randn(2, 4, 2, generator=gen), torch.rand(2, 4, generator=gen)
    inputs = {"weight": weight, "offsets": offsets, "scale": scale}
    leaf = inputs[wanted].clone().requires_grad_()
    inputs[wanted] = leaf
    grad_out = torch.randn(2, 8, 16, 3, 3, generator=gen)
    GroupRollFunction.apply(inputs["weight"], inputs["offsets"], inputs["scale"]).backward(grad_out)

    oracle = [t.detach().double() for t in (inputs["weight"], inputs["offsets"], inputs["scale"])]
    expected = reference_grads(*oracle, grad_out.double())[["weight", "offsets", "scale"].index(wanted)]
    assert relative_error(leaf.grad, expected) < 1e-5
    blocks = emulated[-1][1][0]
    weight_blocks = -(-8 * 16 * 9 // 256)
    assert (blocks == weight_blocks) == (wanted == "weight")


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)])
def test_half_weights_and_half_offsets(emulated, dtype, tolerance) -> None:
    """Autocast-like inputs: 16-bit weight in, 16-bit kernels out; offsets/scale gradients in their own dtype."""
    from mrsynth.ops.cupy_roll import GroupRollFunction

    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(8, 16, 3, 3, generator=gen).to(dtype).requires_grad_()
    offsets = (4 * torch.randn(3, 8, 2, generator=gen)).half().requires_grad_()
    scale = torch.rand(3, 8, generator=gen).requires_grad_()
    out = GroupRollFunction.apply(weight, offsets, scale)
    assert out.dtype == dtype
    grad_out = torch.randn(out.shape, generator=gen).to(dtype)
    out.backward(grad_out)
    assert (weight.grad.dtype, offsets.grad.dtype, scale.grad.dtype) == (dtype, torch.float16, torch.float32)
    oracle = [weight.detach().double(), offsets.detach().double(), scale.detach().double()]
    assert relative_error(out.detach(), rolled_kernel_reference(*oracle)) < tolerance
    expected = reference_grads(*oracle, grad_out.double())
    assert relative_error(weight.grad, expected[0]) < tolerance
    assert relative_error(offsets.grad, expected[1]) < 2e-3  # float32 sums, stored as float16
    assert relative_error(scale.grad, expected[2]) < 1e-5


def test_empty_batch_launches_nothing(emulated) -> None:
    from mrsynth.ops.cupy_roll import GroupRollFunction

    weight = torch.randn(4, 8, 3, 3, requires_grad=True)
    offsets = torch.zeros(0, 2, 2, requires_grad=True)
    out = GroupRollFunction.apply(weight, offsets, torch.zeros(0, 2, requires_grad=True))
    assert out.shape == (0, 4, 8, 3, 3)
    out.sum().backward()
    assert emulated == []
    assert torch.equal(weight.grad, torch.zeros_like(weight))
