"""``mrsynth eval`` and ``mrsynth.evaluation``: slice selection, golden values, perturbation curve, reports, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrsynth.checkpoint import default_normalization, save_checkpoint
from mrsynth.cli.app import app
from mrsynth.data.store import STORE_FORMAT, STORE_KIND, SliceStore, write_manifest, write_subject
from mrsynth.errors import InputError
from mrsynth.evaluation import EvalModel, evaluate_store, paired_test, parse_levels, summary_record
from mrsynth.evaluation.engine import SliceResults
from mrsynth.evaluation.nifti import evaluate_pair
from mrsynth.evaluation.perturb import shift_channel, shift_vectors
from mrsynth.metrics import slice_metrics
from mrsynth.models import ModelConfig, build_model

CONTRASTS = ["t1", "t2", "flair"]
SIZE = 32
LEVELS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


# ---------------------------------------------------------------------------------------------------- helpers
def blob_slices(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """(n, 3, size, size): smooth random t1 and t2 inside a disc, flair = their mean — so any misalignment of one
    input shows up in the target and a model trained on aligned data must lose accuracy when an input shifts."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (0.42 * size) ** 2
    out = np.zeros((n, 3, size, size), np.float32)
    for i in range(n):
        for c in range(2):
            field = gaussian_filter(rng.random((size, size)), 1.2)
            out[i, c] = (field - field.min()) / (field.max() - field.min()) * disc
        out[i, 2] = 0.5 * (out[i, 0] + out[i, 1])
    return out


def write_store(root: Path, arrays: dict[str, np.ndarray], split: dict[str, str], first: int = 10) -> Path:
    """A store through mrsynth.data.store (the real format), slices numbered from ``first``."""
    subjects = {}
    for name, array in arrays.items():
        write_subject(root, name, array)
        subjects[name] = {"n_slices": len(array), "slice_indices": list(range(first, first + len(array)))}
    write_manifest(root, {"kind": STORE_KIND, "format": STORE_FORMAT, "dataset": "brats", "contrasts": CONTRASTS,
                          "slice_size": list(arrays[next(iter(arrays))].shape[-2:]), "split": split,
                          "subjects": subjects})
    return root


def train_l1(arch: str, iters: int, data: np.ndarray, seed: int = 0) -> torch.nn.Module:
    """A very small generator trained with plain L1 on aligned slices (no shift augmentation)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch=arch, widths=(8, 16, 32, 64), blocks_per_stage=1))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    for _ in range(iters):
        batch = torch.from_numpy(data[rng.integers(0, len(data), 8)])
        loss = (model(batch[:, :2]) - batch[:, 2:]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


class MeanOfInputs(torch.nn.Module):
    """A deterministic 'model' (no weights): the mean of its inputs, 0.05 darker — golden values cannot drift
    with torch versions or training noise, so only the evaluation itself is pinned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True) - 0.05


def run_cli(*args: str) -> "CliRunner.invoke":
    return CliRunner().invoke(app, ["eval", *args])


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Convolutions this small run 5-10x faster on one thread than on two when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store (2 test subjects, 2 near-empty slices each) and two checkpoints: an L1-trained tiny ResUnet and a
    briefly trained tiny AGI-Net."""
    root = tmp_path_factory.mktemp("eval")
    arrays = {}
    for k, name in enumerate(("s03", "s04")):
        slices = blob_slices(10, seed=10 + k)
        slices[0] = 0.0
        slices[0, :, :2, :4] = 0.5  # 8 of 1024 px: < 1 % brain, dropped by the protocol
        arrays[name] = slices
    store = write_store(root / "store", arrays, {"s03": "test", "s04": "test"})
    train = blob_slices(256, seed=1)  # separate training data, never the test subjects
    meta = {"scenario": {"inputs": ["t1", "t2"], "target": "flair"}, "normalization": default_normalization(),
            "slice_size": [SIZE, SIZE]}
    resunet = save_checkpoint(root / "resunet.safetensors", train_l1("resunet", 100, train), meta)
    agi = save_checkpoint(root / "agi.safetensors", train_l1("agi-net", 4, train), meta)
    return store, resunet, agi


# ---------------------------------------------------------------------------------------------------- units
def test_parse_levels_includes_stop():
    assert parse_levels("0:3:0.5") == LEVELS
    assert parse_levels("0:0.3:0.1") == [0.0, 0.1, 0.2, 0.3]
    for bad in ("0:3", "a:b:c", "0:3:0", "3:0:0.5", "-1:2:1"):
        with pytest.raises(InputError):
            parse_levels(bad)


def test_shift_channel_is_seeded_bilinear_and_of_the_asked_magnitude():
    rng = np.random.default_rng(3)
    stack = rng.random((5, 2, 16, 16)).astype(np.float32)
    keys = np.arange(5)
    vectors = shift_vectors(1.5, keys, seed=0)
    np.testing.assert_allclose(np.hypot(vectors[:, 0], vectors[:, 1]), 1.5)
    np.testing.assert_array_equal(vectors, shift_vectors(1.5, keys, seed=0))  # reproducible
    assert not np.allclose(vectors, shift_vectors(1.5, keys, seed=1))  # the seed matters
    assert len({tuple(v) for v in vectors.round(6)}) == 5  # one direction per slice
    out = shift_channel(stack, 1, vectors)
    np.testing.assert_array_equal(out[:, 0], stack[:, 0])  # other input untouched
    # integer shift (dy, dx) = (1, 0): an exact translation with zero fill
    moved = shift_channel(stack, 1, np.array([[1.0, 0.0]] * 5))
    np.testing.assert_allclose(moved[:, 1, 1:], stack[:, 1, :-1], atol=1e-6)
    assert np.all(moved[:, 1, 0] == 0)
    # half a pixel along x: the mean of the two neighbours (bilinear)
    half = shift_channel(stack, 1, np.array([[0.0, 0.5]] * 5))
    np.testing.assert_allclose(half[:, 1, :, 1:], 0.5 * (stack[:, 1, :, 1:] + stack[:, 1, :, :-1]), atol=1e-6)
    np.testing.assert_array_equal(shift_channel(stack, 1, np.zeros((5, 2))), stack)


def test_paired_test_detects_a_consistent_difference_and_refuses_unpaired_slices():
    rng = np.random.default_rng(5)
    a, b, c = SliceResults("a", "s", 0.0), SliceResults("b", "s", 0.0), SliceResults("c", "s", 0.0)
    base = {"psnr": 20 + rng.random(30), "ssim": 0.8 + 0.1 * rng.random(30), "mae": 0.05 + 0.01 * rng.random(30)}
    better = {"psnr": base["psnr"] + 0.5 + 0.1 * rng.random(30), "ssim": base["ssim"] + 0.01,
              "mae": base["mae"] - 0.002}
    a.extend("x", range(30), base)
    b.extend("x", range(30), better)
    c.extend("y", range(30), better)
    records = {r["metric"]: r for r in paired_test(a, b)}
    assert records["psnr"]["n"] == 30 and records["psnr"]["p_value"] < 1e-4 and records["psnr"]["mean_diff"] > 0.5
    assert records["ssim"]["mean_diff"] == pytest.approx(1.0)  # reported in %: 0.01 -> 1 point
    assert records["mae"]["mean_diff"] == pytest.approx(-0.2)  # reported x100
    same = {r["metric"]: r for r in paired_test(a, a)}
    assert same["psnr"]["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_test(a, c)


# ---------------------------------------------------------------------------------------------------- golden
def golden_store(root: Path) -> Path:
    """A fixed case built from formulas (no RNG): brain squares of 3x3 (< 1 %), 4x4 and larger px on 32x32."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    sides = [0, 3, 4, 10, 20, 28]
    slices = np.zeros((len(sides), 3, SIZE, SIZE), np.float32)
    for k, side in enumerate(sides):
        box = (yy < side) & (xx < side)
        slices[k, 0] = box * (0.3 + 0.2 * np.sin(xx / 3 + k))
        slices[k, 1] = box * (0.6 + 0.3 * np.cos(yy / 4))
        slices[k, 2] = box * np.clip(slices[k, 0] * slices[k, 1] * 3 + 0.1 * np.sin((xx + yy) / 5), 0, 1)
    slices[2, 2] = 0.0  # brain in the inputs but an empty target slice: still evaluated (inputs decide)
    return write_store(root, {"g1": slices}, {"g1": "test"}, first=40)


GOLDEN = {"slices": [42, 43, 44, 45], "psnr": 20.721837, "ssim": 87.281066, "mae": 5.271791}
GOLDEN_NIFTI = {"slices": [3, 4], "psnr": 35.964301, "ssim": 99.485947, "mae": 0.522838}


def test_golden_store_evaluation(tmp_path):
    """Fails if slice selection (>= 1 % brain of the inputs), the [0, 1] clipping of predictions or a metric
    changes: regression pins computed with this implementation once, whose metric is checked against
    scikit-image in test_metrics.py."""
    model = EvalModel("mean", "mean", Path("mean"), MeanOfInputs(), ("t1", "t2"), "flair", {})
    evaluation = evaluate_store(SliceStore(golden_store(tmp_path)), [model], split="test")
    results = evaluation.main("mean")
    assert results.slice_index == GOLDEN["slices"]
    record = summary_record(results)
    for metric in ("psnr", "ssim", "mae"):
        assert record[metric]["mean"] == pytest.approx(GOLDEN[metric], rel=1e-6), metric


def test_golden_nifti_pair(tmp_path):
    """A raw-scale truth normalised by --normalize truth (99.5th percentile of non-zero voxels), a slice range
    and the truth>0 brain rule, pinned."""
    import nibabel as nib

    zz, yy, xx = np.mgrid[:6, :SIZE, :SIZE].astype(np.float64)
    half_width = np.array([0, 1, 1.5, 3, 6, 10])[:, None, None]  # brain of 0, 4, 4, 36, ... px of 1024
    brain = (np.abs(yy - 15.5) < half_width) & (np.abs(xx - 15.5) < half_width)
    truth = brain * (500 + 400 * np.sin(xx / 4) * np.cos(yy / 6) + 30 * zz)
    pred = np.clip(brain * (0.55 + 0.3 * np.sin(xx / 4 + 0.2) * np.cos(yy / 6)), 0, 1)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    paths = {}
    for name, volume in (("pred", pred), ("truth", truth)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.moveaxis(volume, 0, 2).astype(np.float32), affine), paths[name])
    results, info = evaluate_pair(paths["pred"], paths["truth"], normalize="truth", slices=(1, 5))
    assert info["axial_axis"] == 2
    assert results.slice_index == GOLDEN_NIFTI["slices"]  # z = 1, 2 have < 1 % brain; z = 5 is out of range
    record = summary_record(results)
    for metric in ("psnr", "ssim", "mae"):
        assert record[metric]["mean"] == pytest.approx(GOLDEN_NIFTI[metric], rel=1e-6), metric
    with pytest.raises(InputError, match="normalised"):
        evaluate_pair(paths["pred"], paths["truth"])  # raw truth without --normalize
    result = run_cli("--pred", str(paths["pred"]), "--truth", str(paths["truth"]), "--normalize", "truth",
                     "--slices", "1:5", "--json", "-q")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["n_slices"] == 2 and line["psnr"]["mean"] == pytest.approx(GOLDEN_NIFTI["psnr"], rel=1e-6)


# ---------------------------------------------------------------------------------------------------- end to end
def test_eval_two_checkpoints_with_perturbation_report_and_json(trained, tmp_path):
    """Acceptance 3 and the report: 7 levels per checkpoint, the L1 model's metrics worsen with the shift,
    identical slices for both models, a paired test, metrics.csv / summary.json / PNGs written."""
    store, resunet, agi = trained
    report = tmp_path / "report"
    args = ["--data", str(store), "-c", str(resunet), "-c", str(agi), "--perturb-shift", "0:3:0.5",
            "--report", str(report), "--json", "--device", "cpu"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("summary") == 2 and kinds.count("paired_test") == 3 and kinds.count("report") == 1
    shift = [r for r in records if r["kind"] == "shift"]
    for label in ("resunet", "agi"):
        assert sorted(r["shift_px"] for r in shift if r["model"] == label) == LEVELS
    assert {r["n_slices"] for r in records if r["kind"] in ("summary", "shift")} == {18}  # 2 x (10 - 1 empty)

    curve = sorted((r for r in shift if r["model"] == "resunet"), key=lambda r: r["shift_px"])
    psnr, ssim, mae = (np.array([r[m]["mean"] for r in curve]) for m in ("psnr", "ssim", "mae"))
    assert np.all(np.diff(psnr) <= 0.05) and psnr[0] - psnr[-1] > 3.0, psnr
    assert np.all(np.diff(ssim) <= 0.05) and ssim[0] - ssim[-1] > 5.0, ssim
    assert np.all(np.diff(mae) >= -0.05) and mae[-1] > mae[0], mae

    with open(report / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 7 * 18
    assert rows[0].keys() >= {"model", "subject", "slice", "shift_px", "psnr_db", "ssim_pct", "mae_x100"}
    level0 = [r for r in rows if r["model"] == "resunet" and float(r["shift_px"]) == 0]
    assert np.mean([float(r["psnr_db"]) for r in level0]) == pytest.approx(psnr[0], rel=1e-5)
    assert {r["slice"] for r in level0} == {str(z) for z in range(11, 20)}  # slice 10 (< 1 % brain) dropped
    summary = json.loads((report / "summary.json").read_text())
    assert [s["model"] for s in summary["summaries"]] == ["resunet", "agi"]
    assert summary["shift"]["levels"] == LEVELS and summary["shift"]["perturbed"] == "t2"
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert "shift.png" in pngs and sum(p.startswith("fig5_") for p in pngs) == 2
    for name in pngs:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(report.glob(".*"))  # no temporary file left

    again = run_cli("--data", str(store), "-c", str(resunet), "--report", str(report), "-q")
    assert again.exit_code == 2 and "--overwrite" in again.stderr and "Traceback" not in again.output


def test_eval_metrics_match_a_direct_computation(trained):
    """The engine's values are the metrics of the checkpoint's clipped predictions, zero where no input has signal,
    on the selected slices."""
    from mrsynth.evaluation import load_models

    store, resunet, _ = trained
    (model,) = load_models([str(resunet)])
    results = evaluate_store(SliceStore(store), [model], split="test", subjects=["s04"]).main(model.label)
    slices = np.asarray(SliceStore(store).slices("s04"))[1:]
    with torch.no_grad():
        pred = model.model(torch.from_numpy(slices[:, :2].astype(np.float32))).clamp(0, 1)[:, 0].numpy()
    pred[~(slices[:, :2] != 0).any(axis=1)] = 0.0  # what synthesize writes: no input signal, no output signal
    direct = slice_metrics(pred, slices[:, 2])
    for metric in ("psnr", "ssim", "mae"):
        np.testing.assert_allclose(results.values(metric), direct[metric], rtol=1e-5)


@pytest.mark.parametrize("args, needle", [
    (["--data", "{missing}", "-c", "{ckpt}"], "not a slice store"),
    (["--data", "{store}", "-c", "{missing}"], "no such registered model"),
    (["--data", "{store}", "-c", "{ckpt}", "--perturb-input", "flair", "--perturb-shift", "0:1:1"], "no flair input"),
    (["--data", "{store}", "-c", "{ckpt}", "--perturb-shift", "0:3"], "START:STOP:STEP"),
    (["--data", "{store}", "-c", "{ckpt}", "--dataset", "ixi"], "not 'ixi'"),
    (["--data", "{store}", "-c", "{ckpt}", "--split", "val"], "no finished subject"),
    (["--pred", "{missing}"], "needs both --pred and --truth"),
    (["--data", "{store}", "-c", "{ckpt}", "--report", "{missing}", "--figure", "s03:99"], "no stored slice 99"),
    (["--data", "{store}", "-c", "{ckpt}", "--report", "{missing}", "--roi", "1:2"], "ROW:COL:SIZE"),
])
def test_eval_bad_input_is_one_error_line(trained, tmp_path, args, needle):
    store, resunet, _ = trained
    values = {"store": str(store), "ckpt": str(resunet), "missing": str(tmp_path / "nope")}
    result = run_cli(*(a.format(**values) for a in args))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert not (tmp_path / "nope").exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------------- real data
class MeanOfT1T2(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


def test_store_of_the_holdout_case_reproduces_the_readme_calibration(shared_data, tmp_path):
    """Store path end to end on real data (preprocess -> store -> eval): the mean of normalised T1 and T2 scores
    23.09 dB / 82.32 % on the holdout's 129 slices, as data/README.md measured independently."""
    store = tmp_path / "holdout"
    made = CliRunner().invoke(app, ["preprocess", "--dataset", "brats", "--root", str(shared_data / "holdout"),
                                    "--out", str(store), "--scenario", "t1,t2->flair", "--split", "0,0,1", "-q"])
    assert made.exit_code == 0, made.output
    model = EvalModel("mean", "mean", Path("mean"), MeanOfT1T2(), ("t1", "t2"), "flair", {})
    record = summary_record(evaluate_store(SliceStore(store), [model], split="test").main("mean"))
    assert record["n_slices"] == 129
    assert record["psnr"]["mean"] == pytest.approx(23.09, abs=0.006)
    assert record["ssim"]["mean"] == pytest.approx(82.32, abs=0.006)


def test_nifti_pair_on_avg152_reproduces_the_readme_regression(shared_data, tmp_path):
    """NIfTI pair path on real data: a quadratic regression of PD on T1, T2 fitted on z < 45 and scored on
    z >= 45 (``--slices 45:``) gives data/README.md's 32.68 dB / 91.16 % on 46 slices."""
    import nibabel as nib

    from mrsynth.data.normalization import normalize

    folder = shared_data / "spm12_avg152"
    images = {c: nib.load(folder / f"avg152{c}.nii.gz") for c in ("T1", "T2", "PD")}
    t1, t2, pd = (normalize(images[c].get_fdata(), default_normalization())[0].astype(np.float64)
                  for c in ("T1", "T2", "PD"))
    design = np.stack([np.ones_like(t1), t1, t2, t1 * t1, t2 * t2, t1 * t2], axis=-1)
    coef, *_ = np.linalg.lstsq(design[:, :, :45].reshape(-1, 6), pd[:, :, :45].ravel(), rcond=None)
    pred = tmp_path / "pd_pred.nii.gz"
    nib.save(nib.Nifti1Image(np.clip(design @ coef, 0, 1).astype(np.float32), images["PD"].affine), pred)
    result = run_cli("--pred", str(pred), "--truth", str(folder / "avg152PD.nii.gz"), "--normalize", "truth",
                     "--slices", "45:", "--input", str(folder / "avg152T1.nii.gz"),
                     "--input", str(folder / "avg152T2.nii.gz"), "--json", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["n_slices"] == 46
    assert record["psnr"]["mean"] == pytest.approx(32.68, abs=0.006)
    assert record["ssim"]["mean"] == pytest.approx(91.16, abs=0.006)


@pytest.mark.slow
def test_store_path_and_synthesize_plus_nifti_path_agree_on_the_holdout(shared_data, tmp_path):
    """The two ways to score a model on the holdout case give the same numbers: ``eval --data`` on a float32
    store, and ``synthesize`` followed by ``eval --pred/--truth``. A randomly initialised model makes any
    orientation, normalisation or slice-selection difference between the two pipelines visible."""
    case = shared_data / "holdout" / "BraTS-GLI-00001-000"
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "random.safetensors", build_model(ModelConfig(widths=(8, 16, 32, 64))),
                                 {"scenario": {"inputs": ["t1", "t2"], "target": "flair"},
                                  "normalization": default_normalization(), "slice_size": [240, 240]})
    store = tmp_path / "holdout"
    made = CliRunner().invoke(app, ["preprocess", "--dataset", "brats", "--root", str(shared_data / "holdout"),
                                    "--out", str(store), "--scenario", "t1,t2->flair", "--split", "0,0,1",
                                    "--dtype", "float32", "-q"])
    assert made.exit_code == 0, made.output
    via_store = run_cli("--data", str(store), "-c", str(checkpoint), "--device", "cpu", "--json", "-q")
    assert via_store.exit_code == 0, via_store.output
    flair = tmp_path / "flair.nii.gz"
    t1, t2 = (str(case / f"BraTS-GLI-00001-000-{s}.nii.gz") for s in ("t1n", "t2w"))
    made = CliRunner().invoke(app, ["synthesize", "--t1", t1, "--t2", t2, "--out", str(flair), "--model",
                                    str(checkpoint), "--device", "cpu", "-q"])
    assert made.exit_code == 0, made.output
    via_nifti = run_cli("--pred", str(flair), "--truth", str(case / "BraTS-GLI-00001-000-t2f.nii.gz"),
                        "--normalize", "truth", "--input", t1, "--input", t2, "--json", "-q")
    assert via_nifti.exit_code == 0, via_nifti.output
    a, b = json.loads(via_store.stdout), json.loads(via_nifti.stdout)
    assert a["n_slices"] == b["n_slices"] == 129
    for metric in ("psnr", "ssim", "mae"):
        assert a[metric]["mean"] == pytest.approx(b[metric]["mean"], rel=1e-5), metric


def test_paper_table_too_wide_for_the_terminal_becomes_one_row_per_model_and_scenario():
    """Seven scenarios side by side need about 300 columns; in 80 the wide layout folded every header into single
    letters. The long layout keeps each scenario whole on its row, in the paper's order, with the same cells."""
    from rich.console import Console

    from mrsynth.evaluation.tables import paper_table

    scenarios = ["t1,t2->flair", "t1c,t2,flair->t1", "t1,flair->t2", "t2,flair->t1", "t1,t2,flair->t1c",
                 "t1,t1c,t2->flair", "t1,t1c,flair->t2"]
    rng = np.random.default_rng(4)
    summaries = [{"model": f"model-{i}", "scenario": s, **{m: {"mean": rng.uniform(20, 95), "std": rng.uniform(0, 5)}
                                                         for m in ("psnr", "ssim", "mae")}}
                 for i, s in enumerate(scenarios)]
    wide = paper_table(summaries, "brats")
    assert len(wide.columns) == 1 + 3 * len(scenarios)
    assert paper_table(summaries, "brats", width=400).columns[1].header == wide.columns[1].header
    narrow = paper_table(summaries, "brats", width=80)
    console = Console(width=80, record=True)
    console.print(narrow)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "->" in line]
    assert [next(s for s in scenarios if f" {s} " in row) for row in rows] == [
        "t2,flair->t1", "t1,flair->t2", "t1,t2->flair", "t1c,t2,flair->t1", "t1,t2,flair->t1c", "t1,t1c,t2->flair",
        "t1,t1c,flair->t2"]  # Table 2's three first, then the others in order of appearance
    first = summaries[3]  # t2,flair->t1
    assert f"{first['psnr']['mean']:.2f} ± {first['psnr']['std']:.2f}" in rows[0] and "model-3" in rows[0]
