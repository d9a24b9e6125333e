"""``mrsynth synthesize`` end to end: the real demo case, the bad-input battery, batch mode, default models."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hub_server import write_registry
from synth_helpers import DEMO_T1, DEMO_T2, assert_one_error_line, assert_same_header, checkpoint, crop
from synth_helpers import run_synthesize as run
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.hub import sha256_file


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    return {"t1": crop(DEMO_T1, folder / "c-t1n.nii.gz"), "t2": crop(DEMO_T2, folder / "c-t2w.nii.gz"),
            "model": checkpoint(folder / "micro.safetensors", slice_size=[128, 128]), "folder": folder}


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps tables to 80 columns when not on a terminal


def test_demo_case_end_to_end_keeps_the_reference_grid_and_header(tmp_path):
    """Acceptance 1 on the real 240x240x155 case (the shipped demo = shared/data/brats-style/TCGA-FG-6692)."""
    model = checkpoint(tmp_path / "micro.safetensors")
    out, preview = tmp_path / "flair.nii.gz", tmp_path / "flair.png"
    result = run("--t1", DEMO_T1, "--t2", DEMO_T2, "--out", out, "--model", model, "--preview", preview, "--json")
    assert result.exit_code == 0, result.stderr
    assert_same_header(out, DEMO_T1)
    data = np.asarray(nib.load(str(out)).dataobj)
    assert data.shape == (240, 240, 155) and 0 <= data.min() and data.max() <= 1 and data.std() > 0
    background = (np.asarray(nib.load(str(DEMO_T1)).dataobj) == 0) & (np.asarray(nib.load(str(DEMO_T2)).dataobj) == 0)
    assert background.mean() > 0.5 and np.all(data[background] == 0)  # no input signal, no output signal
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["output"] == str(out) and record["reference"] == "t1"
    assert record["slices"] == 155 and record["scenario"] == "t1,t2->flair" and record["warnings"] == []
    assert preview.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flair.nii.gz", "flair.png", "micro.safetensors"]


def test_tta_flag_reaches_the_synthesis_and_the_json_record(tmp_path, case):
    plain, mirrored = tmp_path / "plain.nii.gz", tmp_path / "tta.nii.gz"
    for out, extra in ((plain, []), (mirrored, ["--tta"])):
        result = run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--model", case["model"], "--json", "-q",
                     *extra)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["tta"] is bool(extra)
    a, b = (np.asarray(nib.load(str(p)).dataobj) for p in (plain, mirrored))
    assert a.shape == b.shape and 0 <= b.min() and b.max() <= 1 and np.abs(a - b).max() > 1e-3


def test_first_input_on_the_command_line_is_the_reference_grid(tmp_path, case):
    t2_big = tmp_path / "t2-big.nii.gz"
    crop(DEMO_T2, t2_big, (slice(64, 176), slice(56, 184), slice(60, 84)))
    out = tmp_path / "out.nii.gz"
    result = run("--t2", t2_big, "--t1", case["t1"], "--out", out, "--model", case["model"], "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["reference"] == "t2" and result.stderr == ""
    assert_same_header(out, t2_big)


def _bad_case(name: str, tmp: Path, case: dict[str, Path]) -> tuple[list[object], Path]:
    """(command-line arguments, the file the error line must name) for one entry of acceptance 3's battery."""
    out = tmp / "out" / "flair.nii.gz"
    t1, t2, model = case["t1"], case["t2"], case["model"]
    raw = DEMO_T2.read_bytes()

    def nifti(data: np.ndarray) -> Path:
        path = tmp / "bad.nii.gz"
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
        return path

    bad = tmp / "bad.nii.gz"
    if name == "missing file":
        pass
    elif name == "empty file":
        bad.write_bytes(b"")
    elif name == "truncated .nii.gz":
        bad.write_bytes(raw[: len(raw) // 3])
    elif name == "text file named .nii.gz":
        bad.write_text("patient 12, T2, see PACS\n")
    elif name == "4-D volume":
        nifti(np.random.default_rng(0).uniform(0, 1, (20, 20, 10, 2)).astype(np.float32))
    elif name == "2-D image":
        nifti(np.random.default_rng(0).uniform(0, 1, (20, 20)).astype(np.float32))
    elif name == "all-NaN volume":
        nifti(np.full((20, 20, 10), np.nan, np.float32))
    elif name == "all-zero volume":
        nifti(np.zeros((20, 20, 10), np.float32))
    elif name == "fields of view do not overlap":
        image = nib.load(str(t2))
        affine = image.affine.copy()
        affine[:3, 3] += [0.0, 500.0, 0.0]
        nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), affine), str(bad))
    elif name == "output folder does not exist":
        out = tmp / "missing" / "flair.nii.gz"
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model], out
    elif name == "output exists":
        out.write_bytes(b"an earlier result")
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model], out
    elif name == "checkpoint with a pickle inside":
        marker = tmp / "pickle-ran"
        model = tmp / "model.safetensors"
        model.write_bytes(pickle.dumps(_Touch(marker)))
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model], model
    elif name == "truncated --match-intensity scan":
        bad.write_bytes(raw[: len(raw) // 3])
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model, "--match-intensity", bad], bad
    elif name == "output is a folder name":
        out = f"{tmp / 'out' / 'newdir'}/"
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model], out
    elif name in ("output without extension", "output is a PNG"):
        out = tmp / "out" / ("result" if name == "output without extension" else "flair.png")
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model], out
    elif name == "--out is an input (with --overwrite)":
        scan = tmp / "out" / "scan.nii.gz"
        scan.write_bytes(t1.read_bytes())
        return ["--t1", scan, "--t2", t2, "--out", scan, "--model", model, "--overwrite"], scan
    elif name == "--preview is --out":
        return ["--t1", t1, "--t2", t2, "--out", out, "--preview", out, "--model", model], out
    elif name == "output name contradicts --target":
        out = tmp / "out" / "pd.nii.gz"
        return ["--t1", t1, "--t2", t2, "--out", out, "--target", "flair", "--model", model], out
    elif name == "same file as --t1 and --t2":
        return ["--t1", t1, "--t2", t1, "--out", out, "--model", model], t1
    elif name == "a copy of --t1 as --t2":
        bad.write_bytes(t1.read_bytes())
    elif name == "constant volume":
        nifti(np.full((20, 20, 10), 7.0, np.float32))
    elif name == "zero voxel size":
        image = nib.load(str(t2))
        zeroed = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header.copy())
        zeroed.header["pixdim"][1:4] = 0.0
        nib.save(zeroed, str(bad))
    elif name == "pickled .pt checkpoint":
        model = tmp / "model.pt"
        model.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
        return ["--t1", t1, "--t2", t2, "--out", out, "--model", model], model
    return ["--t1", t1, "--t2", bad, "--out", out, "--model", model], bad


class _Touch:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


BATTERY = ["missing file", "empty file", "truncated .nii.gz", "text file named .nii.gz", "4-D volume", "2-D image",
           "all-NaN volume", "all-zero volume", "fields of view do not overlap", "output folder does not exist",
           "output exists", "checkpoint with a pickle inside", "pickled .pt checkpoint", "truncated --match-intensity scan",
           "output is a folder name", "output without extension", "output is a PNG", "--out is an input (with --overwrite)",
           "--preview is --out", "output name contradicts --target", "same file as --t1 and --t2", "a copy of --t1 as --t2",
           "constant volume", "zero voxel size"]


@pytest.mark.parametrize("name", BATTERY)
def test_bad_input_battery(tmp_path, case, name):
    (tmp_path / "out").mkdir()
    args, culprit = _bad_case(name, tmp_path, case)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert_one_error_line(run(*args), culprit)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before  # no output, temp file or preview left behind; nothing existing touched
    assert not (tmp_path / "pickle-ran").exists()


def register_default_flair(tmp_path, case, monkeypatch, sha256: str | None = None):
    """The test checkpoint as the registry's default t1,t2->flair model "micro-flair" (its true sha256 unless given)."""
    weights = tmp_path / "weights"
    weights.mkdir()
    model = weights / "flair.safetensors"
    model.write_bytes(case["model"].read_bytes())
    write_registry(weights, [{"name": "micro-flair", "scenario": "t1,t2->flair", "arch": "resunet",
                              "file": "flair.safetensors", "sha256": sha256 or sha256_file(model),
                              "size": model.stat().st_size, "licence": "CC-BY-3.0", "card": "cards/flair.md",
                              "default": True}])
    monkeypatch.setenv("MRSYNTH_WEIGHTS_DIR", str(weights))
    return model


def test_wrong_sha256_of_a_registered_model_is_refused(tmp_path, case, monkeypatch):
    model = register_default_flair(tmp_path, case, monkeypatch, sha256="0" * 64)
    out = tmp_path / "flair.nii.gz"
    line = assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--model", "micro-flair"),
                                 model)
    assert "checksum failed" in line and not out.exists()
    assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--out", out), model)  # the default model too


def test_default_model_from_the_registry(tmp_path, case, monkeypatch):
    model = register_default_flair(tmp_path, case, monkeypatch)
    out = tmp_path / "flair.nii.gz"
    result = run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["scenario"] == "t1,t2->flair" and out.is_file()
    line = assert_one_error_line(run("--t1", case["t1"], "--out", tmp_path / "x.nii.gz", "--model", model), "--t2")
    assert "needs t2" in line
    line = assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--flair", case["t2"], "--out",
                                     tmp_path / "x.nii.gz", "--model", model), "--flair")
    assert "the contrast this model synthesizes" in line
    line = assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / "x.nii.gz",
                                     "--target", "pd"), "--model")
    assert "no registered default model for t1,t2->pd" in line


def test_interrupt_while_writing_leaves_no_file(tmp_path, case, monkeypatch):
    def half_then_interrupt(filename, *args):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    from mrsynth.io import volumes

    monkeypatch.setattr(volumes, "_write_gzip", half_then_interrupt)  # the .nii.gz writer
    monkeypatch.setattr(nib, "save", lambda image, filename: half_then_interrupt(filename))  # the .nii writer
    result = run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / "flair.nii.gz", "--model", case["model"])
    assert result.exit_code == 130 and result.stderr.strip().splitlines() == [
        "error: interrupted (nothing half-written was left behind; re-run to resume)"]
    assert list(tmp_path.iterdir()) == []


def _subjects(folder: Path, case: dict[str, Path], names: list[str]) -> dict[str, tuple[Path, Path]]:
    files = {}
    for name in names:
        t1, t2 = folder / f"{name}-t1n.nii.gz", folder / f"{name}-t2w.nii.gz"
        t1.write_bytes(case["t1"].read_bytes())
        t2.write_bytes(case["t2"].read_bytes())
        files[name] = (t1, t2)
    return files


def test_batch_csv_isolates_a_failing_subject_and_resumes(tmp_path, case):
    files = _subjects(tmp_path, case, ["a", "b", "c"])
    files["b"][1].unlink()  # subject b's T2 is missing
    (tmp_path / "list.csv").write_text("subject,t1,t2\n" + "".join(f"{n},{t1.name},{t2.name}\n"
                                                               for n, (t1, t2) in files.items()))
    out_dir = tmp_path / "synth"
    result = run("--batch", tmp_path / "list.csv", "--out-dir", out_dir, "--model", case["model"], "--json")
    assert result.exit_code == 1, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["a-flair.nii.gz", "c-flair.nii.gz"]
    records = {r["subject"]: r for r in map(json.loads, result.stdout.strip().splitlines())}
    assert [records[n]["status"] for n in "abc"] == ["ok", "failed", "ok"]
    assert str(files["b"][1]) in records["b"]["error"] and "file not found" in records["b"]["error"]
    summary = result.stderr
    failed_row = next(line for line in summary.splitlines() if "│ b " in line)
    assert "failed" in failed_row and "b-t2w.nii.gz: file not found" in failed_row
    assert "2 synthesized, 0 skipped (output exists), 1 failed" in summary
    assert_same_header(out_dir / "a-flair.nii.gz", files["a"][0])
    stamps = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    again = run("--batch", tmp_path / "list.csv", "--out-dir", out_dir, "--model", case["model"], "--json")
    assert again.exit_code == 1
    assert [json.loads(line)["status"] for line in again.stdout.strip().splitlines()] == ["skipped", "failed", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == stamps  # resumed, nothing redone


def test_match_intensity_in_batch_mode(tmp_path, case):
    """One reference scan for every subject; a bad one stops the batch before any output is written."""
    files = _subjects(tmp_path, case, ["a", "b"])
    (tmp_path / "list.csv").write_text("subject,t1,t2\n" + "".join(f"{n},{t1.name},{t2.name}\n"
                                                               for n, (t1, t2) in files.items()))
    out_dir = tmp_path / "synth"
    missing = tmp_path / "no-such-flair.nii.gz"
    refused = run("--batch", tmp_path / "list.csv", "--out-dir", out_dir, "--model", case["model"],
                  "--match-intensity", missing)
    assert_one_error_line(refused, missing)
    assert not out_dir.exists() or not any(out_dir.iterdir())
    reference = files["a"][1]  # any scan in scanner units will do as the test's reference
    result = run("--batch", tmp_path / "list.csv", "--out-dir", out_dir, "--model", case["model"],
                 "--match-intensity", reference, "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["intensity"] for r in records] == [f"matched to {reference}"] * 2
    data = np.asarray(nib.load(str(out_dir / "b-flair.nii.gz")).dataobj)
    assert data.max() > 1  # in the reference's units, not the normalised [0, 1] scale


def test_input_dir_with_brats_names_and_previews(tmp_path, case):
    data = tmp_path / "brats"
    data.mkdir()
    _subjects(data, case, ["case1", "case2"])
    (data / "case1-t2f.nii.gz").write_text("the real FLAIR, kept for evaluation: never read")
    out_dir, previews = tmp_path / "out", tmp_path / "previews"
    previews.mkdir()
    result = run("--input-dir", data, "--out-dir", out_dir, "--preview", previews, "--model", case["model"], "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    assert sorted(os.listdir(out_dir)) == ["case1-flair.nii.gz", "case2-flair.nii.gz"]
    assert sorted(os.listdir(previews)) == ["case1-flair.png", "case2-flair.png"]


def test_help_has_an_example():
    result = CliRunner().invoke(app, ["synthesize", "--help"])
    assert result.exit_code == 0 and "Example: mrsynth synthesize --t1" in result.stdout


def test_bundled_default_model_on_the_demo_case(tmp_path):
    """Acceptance 1 with the model the registry ships as default for (t1, t2): the README's quick-start."""
    from mrsynth.inference import resolve_checkpoint

    assert resolve_checkpoint(None, ["t1", "t2"]).name == "resunet-tiny-brats17-t1t2-flair.safetensors"
    out = tmp_path / "synth.nii.gz"
    result = run("--t1", DEMO_T1, "--t2", DEMO_T2, "--out", out, "--preview", tmp_path / "p.png")
    assert result.exit_code == 0, result.stderr
    assert_same_header(out, DEMO_T1)
