"""``mrsynth train --amp`` on the CPU: bfloat16 autocast, float32 weights and losses, float32 validation."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from test_train import make_store
from typer.testing import CliRunner

from mrsynth.checkpoint import load_checkpoint
from mrsynth.cli.app import app
from mrsynth.devices import cpu_has_fast_bfloat16


def _train(store: Path, run: Path, *extra: str, warning: str = "") -> dict[str, float]:
    result = CliRunner().invoke(app, [
        "train", "--data", str(store), "--scenario", "t1,t2->flair", "--arch", "agi-net", "--groups", "2",
        "--framework", "l1", "--lambda-ssim", "0.5", "--widths", "8,16,16,32", "--iters", "3", "--batch-size", "2",
        "--crop", "24", "--val-every", "3", "--log-every", "1", "--device", "cpu", "--threads", "1", "--seed", "3",
        "--run-dir", str(run), "--json", *extra])
    assert result.exit_code == 0, result.output
    assert (warning in result.output) if warning else ("warning" not in result.output)
    with open(run / "log.csv", newline="") as handle:
        return {f"{row['kind']}:{row['name']}@{row['iteration']}": float(row["value"]) for row in csv.DictReader(handle)}


def test_amp_on_cpu_runs_in_bfloat16_close_to_float32(tmp_path: Path) -> None:
    """On a CPU with native bfloat16 the first loss moves, but only a little."""
    if not cpu_has_fast_bfloat16():
        pytest.skip("this CPU has no native bfloat16 (the fallback is tested below)")
    store = make_store(tmp_path / "store")
    full = _train(store, tmp_path / "fp32")
    mixed = _train(store, tmp_path / "amp", "--amp")
    # The first loss comes from the seeded initial weights on the same batch: bfloat16 autocast changes it a
    # little (so it really ran), and only a little (bfloat16 has 8 significant bits).
    first_full, first_mixed = full["train:l1@1"], mixed["train:l1@1"]
    assert first_mixed != first_full
    assert abs(first_mixed - first_full) / abs(first_full) < 2e-2
    assert all(torch.isfinite(torch.tensor(v)) for v in mixed.values())
    model, _ = load_checkpoint(tmp_path / "amp" / "last.safetensors")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Validation ran in float32 on both runs' final weights: the figures are those `mrsynth eval` would give.
    assert "val:psnr@3" in mixed


def test_amp_on_a_cpu_without_bfloat16_trains_float32_and_says_so(tmp_path: Path, monkeypatch) -> None:
    """Emulated bfloat16 is slower than float32, so there --amp warns and the run is float32 bit for bit."""
    import mrsynth.devices

    monkeypatch.setattr(mrsynth.devices, "cpu_has_fast_bfloat16", lambda: False)  # autocast_dtype asks it
    store = make_store(tmp_path / "store")
    full = _train(store, tmp_path / "fp32")
    mixed = _train(store, tmp_path / "amp", "--amp", warning="no native bfloat16")
    assert mixed == full
