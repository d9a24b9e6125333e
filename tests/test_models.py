"""Full-size forward passes, reproducibility, config round trips and ablation switches."""

from __future__ import annotations

import json

import pytest
import torch

from mrsynth.models import CAGR, ModelConfig, PatchGAN, build_model, preset


@pytest.mark.parametrize("arch", ["agi-net", "resunet"])
def test_forward_shapes_at_paper_width(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch)).eval()
    with torch.inference_mode():
        for size in (256, 240):
            out = model(torch.rand(2, 2, size, size))
            assert out.shape == (2, 1, size, size)
            assert torch.isfinite(out).all()


def test_odd_slice_size_is_padded_and_cropped_back() -> None:
    torch.manual_seed(0)
    model = build_model(preset("tiny")).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 2, 91, 109)).shape == (1, 1, 91, 109)


@pytest.mark.parametrize("arch", ["agi-net", "resunet"])
def test_cpu_run_is_bitwise_reproducible_from_seed(arch: str) -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(1234)
        model = build_model(preset("tiny", arch=arch))
        x = torch.rand(2, 2, 64, 64)
        loss = model(x).square().mean()
        loss.backward()
        return torch.cat([model(x).detach().flatten(), next(model.parameters()).grad.flatten()])

    assert torch.equal(run(), run())


def test_config_round_trips_through_json() -> None:
    config = preset("light", groups=4, cagr_stages=("down1", "body"), attention=False)
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    torch.manual_seed(0)
    a = build_model(config)
    b = build_model(restored.to_dict())
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]


def test_agi_net_replaces_first_conv_of_chosen_stages_only() -> None:
    model = build_model(preset("tiny", cagr_stages=("down2", "up3")))
    cagr_names = {name.split(".")[0] for name, m in model.named_modules() if isinstance(m, CAGR)}
    assert cagr_names == {"down2", "up3"}
    assert all(name.endswith("conv1") for name, m in model.named_modules() if isinstance(m, CAGR))
    assert not any(isinstance(m, CAGR) for m in build_model(preset("tiny", arch="resunet")).modules())


def test_ablation_switches() -> None:
    gr_only = [m for m in build_model(preset("tiny", attention=False)).modules() if isinstance(m, CAGR)]
    ca_only = [m for m in build_model(preset("tiny", rolling=False)).modules() if isinstance(m, CAGR)]
    assert gr_only and all(m.attention is None and m.routing is not None for m in gr_only)
    assert ca_only and all(m.attention is not None and m.routing is None for m in ca_only)
    with pytest.raises(ValueError):
        preset("tiny", attention=False, rolling=False)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(groups=3)
    with pytest.raises(ValueError, match="unknown stage"):
        ModelConfig(cagr_stages=("middle",))
    with pytest.raises(ValueError, match="unknown model config key"):
        ModelConfig.from_dict({"arch": "agi-net", "depth": 3})


def test_patchgan_judges_70px_patches() -> None:
    disc = PatchGAN(in_channels=3)
    out = disc(torch.rand(2, 3, 256, 256))
    assert out.shape == (2, 1, 30, 30)  # pix2pix's 70x70 PatchGAN grid at 256x256
