"""The optional SSIM term of the l1 / pix2pix loss (``--lambda-ssim``): the same SSIM the metrics report (float64,
random images), differentiable (gradcheck), weighted as documented, and refused by frameworks that do not read it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synth_helpers import assert_one_error_line
from test_train import make_store
from typer.testing import CliRunner

from mrsynth.checkpoint import read_metadata
from mrsynth.cli.app import app
from mrsynth.metrics import slice_metrics
from mrsynth.training.losses import generator_loss, ssim


def test_ssim_term_is_the_reported_ssim_in_float64() -> None:
    rng = np.random.default_rng(11)
    truth = rng.random((3, 1, 23, 19))
    fake = np.clip(truth + 0.2 * rng.standard_normal(truth.shape), 0, 1)
    reference = slice_metrics(fake[:, 0], truth[:, 0])["ssim"].mean()  # numpy float64, skimage's definition
    value = float(ssim(torch.from_numpy(fake), torch.from_numpy(truth)))
    assert abs(value - reference) / abs(reference) < 1e-12
    assert float(ssim(torch.from_numpy(truth), torch.from_numpy(truth))) == pytest.approx(1.0, abs=1e-12)


def test_ssim_term_passes_gradcheck() -> None:
    generator = torch.Generator().manual_seed(5)
    fake = torch.rand(2, 1, 9, 10, dtype=torch.float64, generator=generator, requires_grad=True)
    truth = torch.rand(2, 1, 9, 10, dtype=torch.float64, generator=generator)
    assert torch.autograd.gradcheck(lambda x: ssim(x, truth), (fake,))


@pytest.mark.parametrize("logits", [None, "some"])
def test_generator_loss_adds_the_weighted_ssim_term(logits: str | None) -> None:
    generator = torch.Generator().manual_seed(9)
    fake, truth = torch.rand(2, 1, 16, 16, generator=generator), torch.rand(2, 1, 16, 16, generator=generator)
    scores = None if logits is None else torch.randn(2, 1, 4, 4, generator=generator)
    plain = generator_loss(scores, fake, truth, lambda_l1=100.0)
    with_ssim = generator_loss(scores, fake, truth, lambda_l1=100.0, lambda_ssim=3.0)
    assert "ssim" not in plain
    expected = plain["total"] + 3.0 * (1 - ssim(fake, truth))
    assert torch.allclose(with_ssim["total"], expected, rtol=1e-6)
    assert torch.equal(with_ssim["l1"], F.l1_loss(fake, truth))


def test_lambda_ssim_trains_and_is_recorded(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(store), "--scenario", "t1,t2->flair", "--arch", "resunet", "--framework", "l1",
        "--lambda-ssim", "0.5", "--widths", "8,16,16,32", "--iters", "2", "--batch-size", "2", "--crop", "24",
        "--val-every", "2", "--log-every", "1", "--device", "cpu", "--threads", "1", "--run-dir", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert read_metadata(run / "last.safetensors")["training"]["recipe"]["lambda_ssim"] == 0.5
    refused = CliRunner().invoke(app, [
        "train", "--data", str(store), "--scenario", "t1,t2->flair", "--framework", "medsynth", "--lambda-ssim",
        "1", "--run-dir", str(tmp_path / "r2"), "--device", "cpu"])
    assert_one_error_line(refused, "--lambda-ssim")
