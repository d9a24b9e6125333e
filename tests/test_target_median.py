"""Output median standardisation (mrsynth.data.target_median): the factor and the clip, the training constant taken
from a store, and that synthesize, eval and eval's figures apply it alike to checkpoints that ask for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from store_helpers import write_store
from synth_helpers import DEMO_T1, DEMO_T2, checkpoint, crop

from mrsynth.data.store import SliceStore
from mrsynth.data.target_median import (OVER, median_factor, target_median, to_target_median,
                                         to_target_median_by_subject, training_target_median)
from mrsynth.evaluation import EvalModel, evaluate_store
from mrsynth.evaluation.report import FigurePick, panel_prediction
from mrsynth.inference import Synthesizer
from mrsynth.metrics import slice_metrics

MEDIAN = 0.45


def disc_inputs(rng: np.random.Generator, n: int = 5, size: int = 24, channels: int = 2) -> np.ndarray:
    """(n, channels, size, size) random intensities inside a disc, exactly 0 outside it."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (0.4 * size) ** 2
    return (rng.uniform(0.05, 1.0, size=(n, channels, size, size)) * disc).astype(np.float32)


def test_the_median_inside_the_inputs_becomes_the_target_median():
    rng = np.random.default_rng(0)
    inputs = disc_inputs(rng)
    inside = inputs.any(axis=1)
    synthesis = (rng.uniform(0.1, 0.9, size=inside.shape) * inside).astype(np.float32)
    reference = synthesis.astype(np.float64) * (MEDIAN / np.median(synthesis[inside].astype(np.float64)))
    out = to_target_median(synthesis.copy(), inputs, MEDIAN)
    assert out.dtype == np.float32
    assert abs(np.median(out[inside].astype(np.float64)) - MEDIAN) / MEDIAN < 1e-6
    np.testing.assert_allclose(out, reference, rtol=1e-6)  # one factor: every ratio between voxels is kept
    assert np.all(out[~inside] == 0)


def test_values_pushed_past_1_are_clipped_and_an_empty_synthesis_is_left_alone():
    rng = np.random.default_rng(1)
    inputs = disc_inputs(rng)
    inside = inputs.any(axis=1)
    synthesis = (rng.uniform(0.2, 0.9, size=inside.shape) * inside).astype(np.float32)
    factor = median_factor(synthesis, inputs, 0.9)
    assert factor > 1.5
    out = to_target_median(synthesis.copy(), inputs, 0.9)
    assert out.max() == 1.0 and np.any(synthesis * factor > 1.0)
    np.testing.assert_array_equal(out, np.clip(synthesis * np.float32(factor), 0.0, 1.0))
    empty = np.zeros_like(synthesis)
    assert median_factor(empty, inputs, 0.9) == 1.0
    np.testing.assert_array_equal(to_target_median(empty.copy(), inputs, 0.9), empty)


def test_metadata_without_an_entry_asks_for_nothing():
    assert target_median({}) is None
    assert target_median({"target_median": {"value": 0.6771, "subjects": 14, "over": OVER}}) == 0.6771


def test_the_training_constant_is_the_mean_of_the_training_subjects_medians(tmp_path: Path):
    """Validation subjects are left out; the median is taken where any input is non-zero, target zeros included."""
    rng = np.random.default_rng(2)
    subjects, expected = {}, []
    for i, split in enumerate(["train", "train", "train", "val"]):
        slices = disc_inputs(rng, n=4, channels=3)
        slices[:, 2] *= 0.5 + 0.2 * i  # a brightness of its own per subject
        slices[:, 2, :, 10:12] = 0.0  # target zeros inside the inputs' brain count too
        subjects[f"s{i}"] = (slices, split)
        if split == "train":
            inside = slices[:, :2].any(axis=1)
            expected.append(np.median(slices[:, 2].astype(np.float64)[inside]))
    store = SliceStore(write_store(tmp_path / "store", subjects))
    entry = training_target_median(store, ["t1", "t2"], "pd")
    assert entry["subjects"] == 3 and entry["over"] == OVER
    assert abs(entry["value"] - np.mean(expected)) < 5e-5  # rounded to 4 decimals


class InputMean(torch.nn.Module):
    """A deterministic model: the mean of its inputs, so the expected figures follow without training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


def test_eval_and_its_figures_score_the_standardised_output(tmp_path: Path):
    rng = np.random.default_rng(3)
    slices = disc_inputs(rng, n=6, channels=3)
    store = SliceStore(write_store(tmp_path / "store", {"v0": (slices, "val")}))
    meta = {"target_median": {"value": MEDIAN, "subjects": 1, "over": OVER}}
    asking = EvalModel("asking", "a", Path("a"), InputMean(), ("t1", "t2"), "pd", meta)
    plain = EvalModel("plain", "p", Path("p"), InputMean(), ("t1", "t2"), "pd", {})
    evaluation = evaluate_store(store, [asking, plain], split="val")
    x = slices[:, :2]
    raw = np.clip(x.mean(axis=1), 0.0, 1.0)
    expected = slice_metrics(np.clip(raw * (MEDIAN / np.median(raw[x.any(axis=1)])), 0.0, 1.0), slices[:, 2])
    np.testing.assert_allclose(evaluation.main("asking").values("psnr"), expected["psnr"], rtol=1e-5)
    np.testing.assert_allclose(evaluation.main("plain").values("psnr"), slice_metrics(raw, slices[:, 2])["psnr"],
                               rtol=1e-5)
    assert not np.allclose(evaluation.main("asking").values("psnr"), evaluation.main("plain").values("psnr"))
    shown = panel_prediction(store, asking, FigurePick("v0", 2), slices[2], "cpu")
    np.testing.assert_allclose(shown, np.clip(raw[2] * (MEDIAN / np.median(raw[x.any(axis=1)])), 0.0, 1.0),
                               rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("target-median")
    return {"t1": crop(DEMO_T1, folder / "t1.nii.gz"), "t2": crop(DEMO_T2, folder / "t2.nii.gz"),
            "plain": checkpoint(folder / "plain.safetensors", slice_size=[128, 128]),
            "asking": checkpoint(folder / "asking.safetensors", slice_size=[128, 128],
                                 target_median={"value": MEDIAN, "subjects": 14, "over": OVER})}


def test_synthesize_standardises_the_whole_volume_and_says_so(demo_case):
    inputs = {"t1": demo_case["t1"], "t2": demo_case["t2"]}
    plain = Synthesizer(demo_case["plain"], device="cpu")(inputs)
    asking = Synthesizer(demo_case["asking"], device="cpu")(inputs)
    assert "target-median" not in plain.stages
    assert asking.stages[asking.stages.index("model") + 1] == "target-median"
    before, after = sitk.GetArrayFromImage(plain.image), sitk.GetArrayFromImage(asking.image)
    foreground = np.zeros(before.shape, bool)
    for name in ("t1", "t2"):
        foreground |= sitk.GetArrayFromImage(sitk.ReadImage(str(demo_case[name]))) != 0
    assert abs(np.median(after[foreground].astype(np.float64)) - MEDIAN) / MEDIAN < 1e-3
    factor = MEDIAN / np.median(before[foreground].astype(np.float64))
    assert abs(factor - 1) > 0.05  # the random model's own level is not already the target median
    np.testing.assert_allclose(after, np.clip(before * factor, 0.0, 1.0), rtol=1e-4, atol=1e-6)


# -- training on targets of one median (mrsynth train --target-median) ---------------------------------------------

def bright_store(tmp_path: Path) -> Path:
    """Four subjects whose targets share structure but not brightness (0.5x to 1.1x), three to train."""
    rng = np.random.default_rng(4)
    subjects = {}
    for i, split in enumerate(["train", "train", "train", "val"]):
        slices = disc_inputs(rng, n=4, size=32, channels=3)
        slices[:, 2] = (0.2 + 0.5 * slices[:, 0]) * (0.5 + 0.2 * i) * slices[:, :2].any(axis=1)
        subjects[f"s{i}"] = (slices, split)
    return write_store(tmp_path / "store", subjects)


def test_training_targets_are_scaled_to_one_median_and_validation_targets_are_not(tmp_path: Path):
    from mrsynth.training.data import store_datasets

    store, train, val = store_datasets(str(bright_store(tmp_path)), ["t1", "t2"], "pd", target_median=True)
    value = training_target_median(store, ["t1", "t2"], "pd")["value"]
    by_subject: dict[str, list[np.ndarray]] = {}
    for i, subject in enumerate(train.dataset.index[j][0] for j in train.indices):
        x, y = train[i]
        by_subject.setdefault(subject, []).append(y[0][x.any(0)].numpy())
    assert len(by_subject) == 3
    for values in by_subject.values():  # each subject's scaled target has the common median
        assert abs(np.median(np.concatenate(values)) - value) / value < 1e-3
    raw = SliceStore(store.path).slices("s3")
    x, y = val[0]
    np.testing.assert_array_equal(y[0].numpy(), np.asarray(raw[0, 2], dtype=np.float32))


def test_validation_scores_outputs_standardised_per_subject(tmp_path: Path):
    from mrsynth.training.data import store_datasets
    from mrsynth.training.validation import validate

    store, _, val = store_datasets(str(bright_store(tmp_path)), ["t1", "t2"], "pd")
    x = torch.stack([val[i][0] for i in range(len(val))]).numpy()
    y = torch.stack([val[i][1] for i in range(len(val))]).numpy()[:, 0]
    raw = np.clip(x.mean(axis=1), 0.0, 1.0)
    expected = slice_metrics(to_target_median(raw.copy(), x, MEDIAN), y)
    record = validate(InputMean(), val, torch.device("cpu"), batch_size=3, target_median=MEDIAN)
    assert record["n_slices"] == len(y)
    assert abs(record["psnr"] - expected["psnr"].mean()) < 1e-4
    plain = validate(InputMean(), val, torch.device("cpu"), batch_size=3)
    assert abs(plain["psnr"] - slice_metrics(raw, y)["psnr"].mean()) < 1e-4 and plain["psnr"] != record["psnr"]


def test_train_with_target_median_records_the_entry_and_validates_standardised_outputs(tmp_path: Path):
    """The option's whole path: the metadata entry, the recipe flag, and a validation figure that is the
    standardised one (re-measured on the saved weights), not the raw one."""
    from typer.testing import CliRunner

    from mrsynth.checkpoint import load_checkpoint
    from mrsynth.cli.app import app
    from mrsynth.training.data import store_datasets
    from mrsynth.training.validation import validate

    store = bright_store(tmp_path)
    run = tmp_path / "run"
    done = CliRunner().invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->pd", "--arch", "resunet",
                                    "--widths", "4,8,8,8", "--framework", "l1", "--iters", "4", "--batch-size", "2",
                                    "--crop", "24", "--val-every", "4", "--device", "cpu", "--threads", "1", "-q",
                                    "--target-median", "--run-dir", str(run)])
    assert done.exit_code == 0, done.output
    model, meta = load_checkpoint(run / "best.safetensors")
    assert meta["target_median"] == training_target_median(SliceStore(store), ["t1", "t2"], "pd")
    assert meta["training"]["recipe"]["target_median"] is True
    _, _, val = store_datasets(str(store), ["t1", "t2"], "pd")
    standardised = validate(model, val, torch.device("cpu"), target_median=meta["target_median"]["value"])
    raw = validate(model, val, torch.device("cpu"))
    assert abs(meta["training"]["val"]["psnr"] - standardised["psnr"]) < 1e-3
    assert abs(standardised["psnr"] - raw["psnr"]) > 0.01


def test_a_stack_of_several_subjects_is_standardised_subject_by_subject():
    rng = np.random.default_rng(5)
    inputs = disc_inputs(rng, n=6)
    inside = inputs.any(axis=1)
    synthesis = (rng.uniform(0.1, 0.6, size=inside.shape) * inside).astype(np.float32)
    synthesis[3:] *= 1.5  # the second subject is brighter: one factor for both would leave its median off
    subjects = ["a", "a", "a", "b", "b", "b"]
    out = to_target_median_by_subject(synthesis.copy(), inputs, subjects, MEDIAN)
    for part in (slice(0, 3), slice(3, 6)):
        assert abs(np.median(out[part][inside[part]].astype(np.float64)) - MEDIAN) / MEDIAN < 1e-6
        np.testing.assert_array_equal(out[part], to_target_median(synthesis[part].copy(), inputs[part], MEDIAN))
