"""Bias-field augmentation (``--bias-aug``): a smooth multiplicative field of the documented form on each input,
brain mean kept, background kept at 0, the target untouched, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrsynth.training.augment import AugmentedPairs, random_bias_field, sample_generator
from mrsynth.training.config import TrainConfig


def _phantom(seed: int) -> torch.Tensor:
    """A 40x36 slice: a disc of random tissue values in (0.05, 0.3] on a zero background (no value near 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :36]
    disc = (yy - 20) ** 2 + (xx - 18) ** 2 < 15**2
    return torch.from_numpy(np.where(disc, rng.uniform(0.05, 0.3, (40, 36)), 0.0).astype(np.float32))


def test_the_field_is_a_cubic_log_polynomial_with_the_tissue_mean_kept() -> None:
    image = _phantom(1)
    out = random_bias_field(image, 0.5, sample_generator(7, 3))
    tissue = image != 0
    assert torch.equal(out[~tissue], torch.zeros_like(out[~tissue]))
    assert float(out[tissue].mean()) == pytest.approx(float(image[tissue].mean()), rel=1e-5)
    # log(out / image) over the tissue is a polynomial of degree 3 in (u, v): least squares leaves no residual
    v, u = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 36), indexing="ij")
    terms = np.stack([u**i * v**j for i in range(4) for j in range(4 - i)], axis=-1)[tissue.numpy()]
    log_ratio = np.log(out[tissue].double().numpy() / image[tissue].double().numpy())
    coef, *_ = np.linalg.lstsq(terms, log_ratio, rcond=None)
    assert np.abs(terms @ coef - log_ratio).max() < 1e-5
    assert np.ptp(log_ratio) > 0.1  # a real field, not the identity
    second = random_bias_field(image, 0.5, sample_generator(7, 3))
    assert torch.equal(out, second)


def test_a_zero_coefficient_bound_is_the_identity() -> None:
    image = _phantom(2)
    assert torch.allclose(random_bias_field(image, 0.0, sample_generator(0, 0)), image, rtol=1e-6)


class _Pairs:
    def __init__(self) -> None:
        self.x = torch.stack([_phantom(3), _phantom(4)])
        self.y = _phantom(5)[None]

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y


def test_only_the_inputs_carry_a_field_and_each_its_own() -> None:
    base = _Pairs()
    x, y = AugmentedPairs(base, seed=0, flip=False, bias=0.5)[(0, 0)]
    assert torch.equal(y, base.y)
    ratios = [x[c][base.x[c] != 0] / base.x[c][base.x[c] != 0] for c in range(2)]
    assert not torch.allclose(ratios[0], torch.ones_like(ratios[0]), atol=1e-3)
    assert not torch.allclose(ratios[0], ratios[1], atol=1e-3)


def test_the_bound_is_checked() -> None:
    with pytest.raises(ValueError, match="bias-field"):
        TrainConfig(bias=-0.1)
