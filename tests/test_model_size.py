"""Parameter and FLOP counts reproduce the paper's Tables 5 and 7 (the spec's design, shared/spec/cagr.md)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.models import STAGES, ModelConfig, build_model
from mrsynth.models.profile import count_parameters, profile_model


def params_m(**config) -> float:
    return count_parameters(build_model(ModelConfig(**config))) / 1e6


def test_resunet_parameters() -> None:
    assert params_m(arch="resunet") == pytest.approx(17.008, abs=0.02)


@pytest.mark.parametrize("groups, expected", [(1, 33.58), (2, 25.31), (4, 21.19), (8, 19.15), (16, 18.18)])
def test_agi_net_parameters_by_group_count(groups: int, expected: float) -> None:
    """Table 5."""
    assert params_m(groups=groups) == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize("replaced, expected", [(k, v) for k, v in zip(range(1, 8), [17.03, 17.12, 17.47, 18.81, 19.15, 19.24, 19.27])])
def test_cumulative_stage_replacement(replaced: int, expected: float) -> None:
    """Table 7: replacing down1, then +down2, ... up to all seven stages (n = 8)."""
    assert params_m(groups=8, cagr_stages=STAGES[:replaced]) == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize("arch, expected", [("resunet", 141.91), ("agi-net", 154.28)])
def test_flops_match_paper(arch: str, expected: float) -> None:
    gflops = profile_model(build_model(ModelConfig(arch=arch)), in_channels=2, size=256).gflops
    assert abs(gflops - expected) / expected < 0.005


def test_profile_command_json() -> None:
    result = CliRunner().invoke(app, ["profile", "--arch", "agi-net", "--groups", "8", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["params_m"] == pytest.approx(19.15, abs=0.02)
    assert abs(record["gflops"] - 154.28) / 154.28 < 0.005


def test_profile_rejects_bad_groups_with_one_line() -> None:
    result = CliRunner().invoke(app, ["profile", "--groups", "3"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_flops_count_narrow_groups_as_grouped_convs() -> None:
    """The tiny preset's PyTorch stem runs its 2-channels-per-group routing convs densely (the fused CPU kernel,
    suspended here, is invisible to the counter); FLOPs must still count them grouped."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mrsynth.ops import cpu_stem

    model = build_model(ModelConfig(widths=(16, 32, 64, 128))).eval()
    counted = profile_model(model, in_channels=2, size=64).gflops * 1e9
    x = torch.randn(1, 2, 64, 64)
    with FlopCounterMode(display=False) as as_run, torch.no_grad(), cpu_stem.suspended():
        model(x)
    # Each of the 4 routing convs at 16 channels, 64x64: dense form 16*16*9 MACs per pixel, grouped form 16*2*9.
    zeros = 4 * 2 * 64 * 64 * 9 * (16 * 16 - 16 * 2)
    assert as_run.get_total_flops() - counted == zeros


def test_flop_counting_in_one_thread_leaves_other_threads_models_alone() -> None:
    """count_flops switches narrow convs to their grouped form and suspends the fused stem for its own thread only."""
    import threading

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mrsynth.models.cagr import GroupedConv2d, grouped_form
    from mrsynth.ops import cpu_stem

    conv = GroupedConv2d(16, 16, 3, padding=1, groups=8)
    x = torch.randn(1, 16, 8, 8)

    def flops() -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            conv(x)
        return counter.get_total_flops()

    dense, grouped = 2 * 16 * 16 * 9 * 64, 2 * 16 * 2 * 9 * 64
    inside, release = threading.Event(), threading.Event()

    def count_elsewhere() -> None:
        with grouped_form(), cpu_stem.suspended():
            inside.set()
            release.wait(30)

    other = threading.Thread(target=count_elsewhere)
    other.start()
    try:
        assert inside.wait(30)
        assert flops() == dense and not cpu_stem._SUSPENDED.get()
        with grouped_form():
            assert flops() == grouped
    finally:
        release.set()
        other.join()
