"""The fused CPU routing-stem kernel (mrsynth/ops/routing_stem.c): numerics against a float64 PyTorch stem, when it
is used and when not, and its build (cache, atomic write, fallbacks)."""

from __future__ import annotations

import pytest
import torch

from mrsynth.models import cagr
from mrsynth.models.cagr import ChannelLayerNorm, RoutingFunction
from mrsynth.ops import cpu_isa, cpu_stem
from stem_helpers import RUNNABLE_ISAS, randomised_routing

needs_compiler = pytest.mark.skipif(cpu_stem.compiler() is None, reason="no C compiler on PATH")


@needs_compiler
@pytest.mark.parametrize(
    ("channels", "groups"), [(8, 8), (16, 8), (32, 8), (64, 8), (128, 8), (96, 3), (128, 2)],
)
@pytest.mark.parametrize(("height", "width"), [(9, 21), (4, 3), (16, 16)])
@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_fused_stem_matches_float64_stem(channels: int, groups: int, height: int, width: int, isa: str) -> None:
    kernel = cpu_stem.load(isa)
    assert kernel.library is not None, kernel.detail
    routing = randomised_routing(channels, groups, seed=channels + width)
    x = torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(height)) * 2 + 0.5
    with torch.inference_mode():
        reference = routing.double().stem(x.double()).mean(dim=(2, 3))
        routing.float()
        assert cpu_stem.applies(routing.stem, x, ChannelLayerNorm)
        fused = cpu_stem.fused_stem_features(routing.stem, x.contiguous(memory_format=torch.channels_last), kernel)
    assert fused.shape == reference.shape
    assert ((fused.double() - reference).norm() / reference.norm()).item() < 1e-5


@needs_compiler
def test_each_variant_builds_the_tiles_it_names(fresh_kernel_cache) -> None:
    built = {isa: cpu_stem.load(isa).isa for isa in RUNNABLE_ISAS}
    assert built["portable"] == "portable"
    if "avx2" in built:
        assert built["avx2"] == "avx2"
    native = "avx512" if "avx512f" in cpu_isa.cpu_flags() else "avx2" if "avx2" in built else "portable"
    assert built["native"] == native
    assert len({cpu_stem.load(isa).path for isa in RUNNABLE_ISAS}) == len(RUNNABLE_ISAS)  # one cached file each


@needs_compiler
def test_routing_function_uses_the_kernel_only_for_inference(monkeypatch) -> None:
    calls = []
    real = cagr.dispatched_stem_features
    monkeypatch.setattr(cagr, "dispatched_stem_features", lambda stem, x: calls.append(1) or real(stem, x))
    routing = randomised_routing(16, 8, seed=0)
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        fused = routing(x)
    assert calls == [1]
    trained = routing(x)  # gradients wanted: the PyTorch stem, which autograd can differentiate
    assert calls == [1]
    trained[0].sum().backward()
    assert routing.stem[0].weight.grad is not None and routing.stem[0].weight.grad.abs().sum() > 0
    for got, want in zip(fused, trained):
        assert torch.allclose(got, want.detach(), rtol=1e-5, atol=1e-6)


def test_unsupported_layers_fall_back() -> None:
    x = torch.randn(1, 48, 8, 8)
    with torch.no_grad():
        assert not cpu_stem.applies(RoutingFunction(48, 2).stem, x, ChannelLayerNorm)  # 24 channels per group: no kernel form
        assert not cpu_stem.applies(RoutingFunction(16, 8).stem, x[:, :16].double(), ChannelLayerNorm)
        stem = RoutingFunction(16, 8).stem
        stem[2] = torch.nn.GELU(approximate="tanh")
        assert not cpu_stem.applies(stem, x[:, :16], ChannelLayerNorm)


def test_unknown_switch_value_is_a_user_error(monkeypatch) -> None:
    from mrsynth.errors import InputError

    monkeypatch.setenv(cpu_stem.SWITCH_ENV, "fast")
    with pytest.raises(InputError, match="unknown value 'fast'"):
        cpu_stem.status()


def test_switch_turns_the_kernel_off(monkeypatch) -> None:
    monkeypatch.setenv(cpu_stem.SWITCH_ENV, "off")
    usable, detail = cpu_stem.status()
    assert not usable and cpu_stem.SWITCH_ENV in detail
    with torch.no_grad():
        assert not cpu_stem.applies(RoutingFunction(16, 8).stem, torch.randn(1, 16, 8, 8), ChannelLayerNorm)


@needs_compiler
def test_build_is_cached_and_written_atomically(fresh_kernel_cache) -> None:
    usable, detail = cpu_stem.status()
    assert usable, detail
    built = list(fresh_kernel_cache.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so" and str(built[0]) in detail
    stamp = built[0].stat().st_mtime_ns
    cpu_stem.load.cache_clear()
    assert cpu_stem.status()[0]
    assert list(fresh_kernel_cache.iterdir()) == built and built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_without_a_compiler_the_stem_runs_in_pytorch(fresh_kernel_cache, monkeypatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-mrsynth")
    usable, detail = cpu_stem.status()
    assert not usable and "compiler" in detail
    routing = randomised_routing(16, 8, seed=1)
    x = torch.randn(1, 16, 10, 10)
    with torch.no_grad():
        offsets, scale = routing(x)
    assert torch.isfinite(offsets).all() and torch.isfinite(scale).all()
    assert not list(fresh_kernel_cache.iterdir())


def test_a_failing_compiler_is_reported_and_leaves_no_file(fresh_kernel_cache, monkeypatch, tmp_path_factory) -> None:
    fake = tmp_path_factory.mktemp("bin") / "cc"
    fake.write_text("#!/bin/sh\necho 'error: this compiler always fails' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    usable, detail = cpu_stem.status()
    assert not usable and "always fails" in detail
    assert not list(fresh_kernel_cache.iterdir())


def test_info_reports_the_kernel(monkeypatch) -> None:
    from mrsynth.cli.info import collect_info

    monkeypatch.setenv(cpu_stem.SWITCH_ENV, "off")
    reported = collect_info()["cpu_stem_kernel"]
    assert (reported["usable"], reported["detail"], reported["switch"]) == (False, cpu_stem.status()[1], "off")
    monkeypatch.delenv(cpu_stem.SWITCH_ENV)
    usable, detail = cpu_stem.status()
    reported = collect_info()["cpu_stem_kernel"]
    assert (reported["usable"], reported["detail"], reported["switch"]) == (usable, detail, "auto")
    assert reported["isa"] == cpu_stem.active_kernel().isa
