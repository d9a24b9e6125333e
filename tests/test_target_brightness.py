"""scripts/target_brightness.py: it recovers a brightness factor planted in a validation subject's target, and
its leave-one-out fit tells a predictable target median from an unpredictable one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from store_helpers import write_store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "target_brightness.py"
sys.path.insert(0, str(SCRIPT.parent))
from target_brightness import best_factor, leave_one_out_rmse  # noqa: E402

PLANTED = 0.8  # the validation subject's target is this times what its inputs say


def subject(rng: np.random.Generator, brightness: float = 1.0) -> np.ndarray:
    """(6, 3, 12, 12) slices: t1, t2 in a disc, pd = brightness * (0.1 + 0.3 t1 + 0.5 t2) there, 0 outside."""
    inputs = rng.uniform(0.1, 0.9, size=(6, 2, 12, 12))
    yy, xx = np.mgrid[:12, :12]
    inputs *= ((yy - 5.5) ** 2 + (xx - 5.5) ** 2 < 30)
    pd = brightness * (0.1 + 0.3 * inputs[:, 0] + 0.5 * inputs[:, 1]) * (inputs[:, 0] > 0)
    return np.concatenate([inputs, pd[:, None]], axis=1).astype(np.float32)


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    subjects = {f"train{i}": (subject(rng), "train") for i in range(5)}
    subjects["val0"] = (subject(rng, PLANTED), "val")
    return write_store(tmp_path / "store", subjects)


def test_best_factor_recovers_a_global_scale() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 1.0, size=(4, 16, 16))
    brain = rng.uniform(size=truth.shape) < 0.7
    assert abs(best_factor(truth / 1.7, truth, brain) - 1.7) / 1.7 < 1e-12


def test_leave_one_out_tells_predictable_from_unpredictable() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(12, 2))
    linear = 0.3 + features @ np.array([0.5, -0.2])
    assert leave_one_out_rmse(features, linear) < 1e-12
    noise = rng.normal(0.5, 0.1, size=12)  # independent of the features
    assert leave_one_out_rmse(features, noise) > 0.5 * noise.std()


def test_script_finds_the_planted_brightness(store: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(store), "--scenario", "t1,t2->pd",
                           "--sample", "1"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    target, *subjects = [json.loads(line) for line in done.stdout.splitlines()]
    assert target["kind"] == "target" and target["train_subjects"] == 5
    assert target["medians"]["val0"] < 0.9 * target["train_median_mean"]
    (row,) = subjects
    assert (row["subject"], row["candidate"]) == ("val0", "regression")
    assert abs(row["factor"] - PLANTED) < 2e-3  # the store keeps float32 slices; the fit is exact up to rounding
    assert row["psnr_after_factor"] > row["psnr"] + 10
    assert row["ssim_after_factor"] > row["ssim"]  # the planted factor costs SSIM too (its luminance term)
    assert 0 < row["output_median"] < 1


def test_bad_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path), "--scenario", "t1,t2->pd"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
