"""The CUDA roll backend: loader, availability and dispatch on any machine; kernel parity on a GPU (``-m gpu``).

The GPU tests compare the CuPy kernels with the torch reference evaluated in float64, for forward and every
gradient; they are deselected by default (pyproject: ``-m 'not slow and not gpu'``) and skip without CUDA/CuPy.
Run them with ``python3 -m pytest -m gpu tests/test_cuda_roll.py`` (also part of benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mrsynth.models.roll import rolled_kernel, rolled_kernel_reference
from mrsynth.ops import cuda_roll_available, cuda_roll_status, rolled_kernel_cuda
from mrsynth.ops import cupy_roll, sources


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def problem(c_out, c_in, k_h, k_w, groups, batch, magnitude, seed, device="cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(c_out, c_in, k_h, k_w, generator=gen)
    offsets = (2 * torch.rand(batch, groups, 2, generator=gen) - 1) * magnitude
    offsets[0, 0] = torch.tensor([-3.4 * k_w - 0.3, 2.6 * k_h + 0.45])  # beyond the kernel, both signs
    scale = 0.2 + torch.rand(batch, groups, generator=gen)
    grad_out = torch.randn(batch, c_out, c_in, k_h, k_w, generator=gen)
    return [t.to(device) for t in (weight.to(dtype), offsets, scale, grad_out.to(dtype))]


def reference_grads(weight, offsets, scale, grad_out):
    leaves = [t.detach().double().requires_grad_() for t in (weight, offsets, scale)]
    out = rolled_kernel_reference(*leaves)
    out.backward(grad_out.double())
    return out.detach(), [leaf.grad for leaf in leaves]


# ---------------------------------------------------------------------------------------------------------------
# Any machine: sources, availability, dispatch.


def test_prepared_source_is_self_contained() -> None:
    text = sources.prepared_source()
    assert "#include" not in text
    assert text.count("MRSYNTH_GROUP_ROLL_CUH") >= 2  # the header's guard, pasted in
    for suffix in cupy_roll.SUFFIXES.values():
        assert f"MRSYNTH_GROUP_ROLL_KERNELS({suffix}," in text


def test_source_dir_override_and_missing_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_cuda = Path(__file__).resolve().parents[1] / "cuda"
    copy = tmp_path / "kernels"
    copy.mkdir()
    for name in (sources.SOURCE_NAME, sources.HEADER_NAME):
        (copy / name).write_text((repo_cuda / name).read_text())
    monkeypatch.setenv(sources.CUDA_DIR_ENV, str(copy))
    assert sources.cuda_source_dir() == copy
    (copy / sources.SOURCE_NAME).write_text("// no include here\n")
    with pytest.raises(ValueError, match="exactly once"):
        sources.prepared_source()
    monkeypatch.setattr(sources, "source_candidates", lambda: [tmp_path / "nowhere"])
    assert sources.cuda_source_dir() is None
    with pytest.raises(FileNotFoundError, match=sources.CUDA_DIR_ENV):
        sources.prepared_source()


def test_availability_names_the_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    cupy_roll.availability.cache_clear()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert cuda_roll_status() == (False, "no CUDA device visible to torch")
        cupy_roll.availability.cache_clear()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
        usable, why = cuda_roll_status()
        assert not usable and "cupy not importable" in why and "mrsynth[cuda]" in why
        assert cuda_roll_available() is False
    finally:
        cupy_roll.availability.cache_clear()


def test_dispatch_on_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    weight, offsets, scale, _ = problem(4, 8, 3, 3, 2, 2, 3.0, seed=1)
    expected = rolled_kernel_reference(weight, offsets, scale)
    for backend in ("auto", "torch"):
        monkeypatch.setenv("MRSYNTH_ROLL_BACKEND", backend)
        assert torch.equal(rolled_kernel(weight, offsets, scale), expected)
    monkeypatch.setenv("MRSYNTH_ROLL_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        rolled_kernel(weight, offsets, scale)


def test_float64_has_no_kernel_and_the_dispatch_keeps_it_on_the_reference(monkeypatch) -> None:
    weight, offsets, scale, _ = problem(4, 8, 3, 3, 2, 2, 3.0, seed=2, dtype=torch.float64)
    offsets, scale = offsets.double(), scale.double()
    with pytest.raises(ValueError, match="no CUDA roll kernel"):
        rolled_kernel_cuda(weight, offsets, scale)
    monkeypatch.setenv("MRSYNTH_ROLL_BACKEND", "auto")
    assert torch.equal(rolled_kernel(weight, offsets, scale), rolled_kernel_reference(weight, offsets, scale))


def test_ops_import_nothing_from_the_model_layer() -> None:
    """ops sit below models (cli -> pipeline -> io/data -> models -> ops): no import of mrsynth.models there."""
    import ast

    for source in (Path(__file__).resolve().parents[1] / "mrsynth" / "ops").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith("mrsynth.models") for n in names), (source.name, names)


@pytest.mark.parametrize(("shapes", "message"), [
    (((4, 8, 3), (2, 2, 2), (2, 2)), "weight must be"),
    (((4, 8, 3, 3), (2, 2, 3), (2, 2)), "offsets must be"),
    (((4, 8, 3, 3), (2, 2, 2), (2, 3)), "scale must be"),
    (((4, 8, 3, 3), (2, 3, 2), (2, 3)), "not divisible"),
    (((4, 8, 3, 3), (2, 2, 2), (2, 2)), "one CUDA device"),
])
def test_input_checks(shapes, message) -> None:
    tensors = [torch.zeros(shape) for shape in shapes]
    with pytest.raises(ValueError, match=message):
        cupy_roll.check_inputs(*tensors)


def test_info_reports_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from mrsynth.cli.info import collect_info

    monkeypatch.setenv("MRSYNTH_ROLL_BACKEND", "auto")
    usable, why = cuda_roll_status()
    roll = collect_info()["roll_backend"]
    assert roll["cuda_kernel_usable"] is usable
    assert roll["active_on_gpu"] == ("cuda" if usable else "torch")
    assert roll["detail"] == why


# ---------------------------------------------------------------------------------------------------------------
# GPU: the kernels themselves.

needs_kernel = pytest.mark.skipif(not cuda_roll_available(), reason=f"CUDA roll kernel unusable: {cuda_roll_status()[1]}")

PARITY_CASES = [  # (c_out, c_in, k_h, k_w, groups, batch, offset magnitude)
    (16, 32, 3, 3, 8, 8, 7.0),
    (16, 32, 3, 3, 1, 1, 0.9),
    (8, 16, 4, 4, 8, 1, 9.0),
    (8, 16, 4, 4, 1, 8, 2.5),
    (12, 40, 5, 5, 8, 3, 12.0),
    (6, 16, 3, 5, 2, 2, 6.0),
    (256, 256, 3, 3, 8, 16, 3.0),  # an AGI-Net stage: many reduction slices per group
]


@pytest.mark.gpu
@needs_kernel
@pytest.mark.parametrize(("c_out", "c_in", "k_h", "k_w", "groups", "batch", "magnitude"), PARITY_CASES)
def test_float32_forward_and_backward_parity(c_out, c_in, k_h, k_w, groups, batch, magnitude) -> None:
    weight, offsets, scale, grad_out = problem(c_out, c_in, k_h, k_w, groups, batch, magnitude, seed=c_in + k_w,
                                               device="cuda")
    leaves = [t.clone().requires_grad_() for t in (weight, offsets, scale)]
    out = rolled_kernel_cuda(*leaves)
    out.backward(grad_out)
    expected_out, expected_grads = reference_grads(weight, offsets, scale, grad_out)
    assert relative_error(out.detach(), expected_out) < 1e-5
    for name, leaf, expected in zip(("weight", "offsets", "scale"), leaves, expected_grads):
        assert relative_error(leaf.grad, expected) < 1e-5, name


@pytest.mark.gpu
@needs_kernel
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_precision_parity(dtype, tolerance) -> None:
    weight, offsets, scale, grad_out = problem(32, 64, 3, 3, 8, 4, 5.0, seed=5, device="cuda", dtype=dtype)
    leaves = [t.clone().requires_grad_() for t in (weight, offsets, scale)]
    out = rolled_kernel_cuda(*leaves)
    assert out.dtype == dtype
    out.backward(grad_out)
    expected_out, expected_grads = reference_grads(weight, offsets, scale, grad_out)
    assert relative_error(out.detach(), expected_out) < tolerance
    assert relative_error(leaves[0].grad, expected_grads[0]) < tolerance
    assert relative_error(leaves[1].grad, expected_grads[1]) < 1e-4  # float32 sums of exact 16-bit products
    assert relative_error(leaves[2].grad, expected_grads[2]) < 1e-4


@pytest.mark.gpu
@needs_kernel
def test_dispatcher_uses_the_kernel_and_side_streams_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MRSYNTH_ROLL_BACKEND", "cuda")
    weight, offsets, scale, _ = problem(64, 64, 3, 3, 8, 8, 4.0, seed=9, device="cuda")
    weight.requires_grad_()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = rolled_kernel(weight, offsets, scale)
    torch.cuda.current_stream().wait_stream(stream)
    assert type(out.grad_fn).__name__ == "GroupRollFunctionBackward"
    assert relative_error(out.detach(), rolled_kernel_reference(weight.double(), offsets.double(), scale.double())) < 1e-5


@pytest.mark.gpu
@needs_kernel
def test_tiny_agi_net_same_loss_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    from mrsynth.models import build_model, preset

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the rolls must be the only difference
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    model = build_model(preset("tiny")).cuda()
    with torch.no_grad():  # move the offset heads off zero so the rolls do something
        for module in model.modules():
            if hasattr(module, "offset_head"):
                module.offset_head.weight.normal_(0.0, 2.0)
    x = torch.rand(3, 2, 64, 64, device="cuda")
    target = torch.rand(3, 1, 64, 64, device="cuda")
    results = {}
    for backend in ("torch", "cuda"):
        monkeypatch.setenv("MRSYNTH_ROLL_BACKEND", backend)
        model.zero_grad()
        loss = (model(x) - target).abs().mean()
        loss.backward()
        results[backend] = (loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert relative_error(results["cuda"][0], results["torch"][0]) < 1e-5
    assert relative_error(results["cuda"][1], results["torch"][1]) < 1e-4
