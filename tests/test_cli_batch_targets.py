"""``mrsynth synthesize``: the target from the output's name, batch shards, BIDS derivatives, CSV output folders,
JSON records on failure, and the input mix-ups that used to pass without a word."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hub_server import write_registry
from synth_helpers import DEMO_T1, DEMO_T2, checkpoint, crop
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.contrasts import contrast_from_filename
from mrsynth.hub import sha256_file
from mrsynth.io.subjects import Subject, shard_subjects


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("targets")
    return {"t1": crop(DEMO_T1, folder / "c-t1n.nii.gz"), "t2": crop(DEMO_T2, folder / "c-t2w.nii.gz"),
            "flair": checkpoint(folder / "flair.safetensors", slice_size=[128, 128]),
            "pd": checkpoint(folder / "pd.safetensors", seed=1, slice_size=[128, 128],
                             scenario={"inputs": ["t1", "t2"], "target": "pd"})}


@pytest.fixture()
def registry(case: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private registry like the real one: a default t1,t2->flair model and a non-default t1,t2->pd model."""
    weights = tmp_path / "weights"
    weights.mkdir()
    entries = []
    for target, default in (("flair", True), ("pd", False)):
        file = weights / f"{target}.safetensors"
        file.write_bytes(case[target].read_bytes())
        entries.append({"name": f"micro-{target}", "scenario": f"t1,t2->{target}", "arch": "resunet",
                        "file": file.name, "sha256": sha256_file(file), "size": file.stat().st_size,
                        "licence": "CC-BY-3.0", "card": f"cards/{target}.md", "default": default})
    write_registry(weights, entries)
    monkeypatch.setenv("MRSYNTH_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("COLUMNS", "200")
    return weights


def run(*args: object):
    return CliRunner().invoke(app, ["synthesize", *[str(a) for a in args]])


@pytest.mark.parametrize(("name", "contrast"), [
    ("pd.nii.gz", "pd"), ("PD.nii", "pd"), ("flair.nii.gz", "flair"), ("case-t2f.nii.gz", "flair"),
    ("x_t1c.nii.gz", "t1c"), ("t1ce.nii.gz", "t1c"), ("s_T2w.nii.gz", "t2"), ("sub-01_PDw.nii.gz", "pd"),
    ("sub-01_desc-synth_FLAIR.nii.gz", "flair"), ("sub-01_ce-gd_T1w.nii.gz", "t1c"),
    ("IXI002-Guys-0828-PD.nii.gz", "pd"), ("out.nii.gz", None), ("t1_to_t2_synth.nii.gz", None), ("result", None),
])
def test_contrast_from_filename(name: str, contrast: str | None) -> None:
    assert contrast_from_filename(name) == contrast


def test_output_name_chooses_the_target(registry: Path, case: dict[str, Path], tmp_path: Path) -> None:
    for name, target in (("pd.nii.gz", "pd"), ("sub-01_desc-synth_PDw.nii.gz", "pd"), ("flair.nii.gz", "flair")):
        result = run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / name, "--json", "-q")
        assert result.exit_code == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["target"] == target and record["scenario"] == f"t1,t2->{target}"


def test_a_name_without_a_contrast_gets_the_default_and_a_note(registry: Path, case: dict[str, Path],
                                                                tmp_path: Path) -> None:
    result = run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / "out.nii.gz", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["target"] == "flair"
    note = next(line for line in result.stderr.splitlines() if line.startswith("note:"))
    assert "synthesizing flair" in note and "pd" in note


def test_a_name_that_is_an_input_or_an_explicit_model_that_disagrees_is_refused(registry: Path, case: dict[str, Path],
                                                                                tmp_path: Path) -> None:
    named_input = run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / "sub-01_T1w.nii.gz")
    assert named_input.exit_code == 2 and "which is one of the inputs" in named_input.stderr
    wrong_model = run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / "pd.nii.gz", "--model", "micro-flair")
    assert wrong_model.exit_code == 2 and "synthesizes flair, not pd" in wrong_model.stderr
    assert not any(tmp_path.glob("*.nii.gz"))


def test_failure_in_single_mode_still_prints_a_json_record(registry: Path, case: dict[str, Path],
                                                           tmp_path: Path) -> None:
    out = tmp_path / "pd.nii.gz"
    result = run("--t1", case["t1"], "--t2", tmp_path / "missing.nii.gz", "--out", out, "--json")
    assert result.exit_code == 2
    record = json.loads(result.stdout)
    assert record["status"] == "failed" and record["output"] == str(out) and "missing.nii.gz" in record["error"]


def _csv(folder: Path, case: dict[str, Path], names: list[str], out: str | None = None) -> Path:
    rows = []
    for name in names:
        t1, t2 = folder / f"{name}-t1n.nii.gz", folder / f"{name}-t2w.nii.gz"
        t1.write_bytes(case["t1"].read_bytes())
        t2.write_bytes(case["t2"].read_bytes())
        rows.append(f"{name},{t1.name},{t2.name}" + (f",{out.format(name=name)}" if out else ""))
    listing = folder / "list.csv"
    listing.write_text("subject,t1,t2" + (",out" if out else "") + "\n" + "\n".join(rows) + "\n")
    return listing


def test_shards_split_a_list_disjointly_and_completely() -> None:
    subjects = [Subject(f"s{i}") for i in range(7)]
    parts = [shard_subjects(subjects, i, 3) for i in (1, 2, 3)]
    names = [s.name for part in parts for s in part]
    assert sorted(names) == sorted(s.name for s in subjects) and len(names) == len(set(names))
    assert [len(p) for p in parts] == [3, 2, 2]


def test_shards_over_a_five_subject_csv_write_every_output_exactly_once(registry: Path, case: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    listing = _csv(tmp_path, case, [f"p{i}" for i in range(5)])
    out_dir = tmp_path / "synth"
    written: list[str] = []
    for shard in ("1/3", "2/3", "3/3"):
        result = run("--batch", listing, "--out-dir", out_dir, "--shard", shard, "--json")
        assert result.exit_code == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert all(r["status"] == "ok" for r in records)
        written += [r["output"] for r in records]
        assert re.search(rf"shard {shard}: {len(records)} of 5 subjects; {len(records)} synthesized", result.stderr)
    assert sorted(Path(p).name for p in written) == [f"p{i}-flair.nii.gz" for i in range(5)]
    assert len(written) == len(set(written)) == len(list(out_dir.iterdir()))
    again = run("--batch", listing, "--out-dir", out_dir, "--shard", "2/3", "--json")
    assert {json.loads(line)["status"] for line in again.stdout.splitlines()} == {"skipped"}
    bad = run("--batch", listing, "--out-dir", out_dir, "--shard", "4/3")
    assert bad.exit_code == 2 and "--shard" in bad.stderr


def test_csv_outputs_create_their_folders_and_name_their_targets(registry: Path, case: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    listing = _csv(tmp_path, case, ["a", "b"], out="results/{name}/{name}_PDw.nii.gz")
    result = run("--batch", listing, "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["target"] for r in records] == ["pd", "pd"]
    assert (tmp_path / "results" / "a" / "a_PDw.nii.gz").is_file()
    (tmp_path / "b-t2w.nii.gz").unlink()
    redo = run("--batch", listing, "--overwrite", "--json")
    failed = [json.loads(line) for line in redo.stdout.splitlines() if json.loads(line)["status"] == "failed"]
    assert len(failed) == 1 and "b-t2w.nii.gz: file not found" in failed[0]["error"]


def _bids_tree(root: Path, case: dict[str, Path]) -> Path:
    """Two subjects: sub-01 without sessions, sub-02 with ses-1 and ses-2."""
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.10.0"}))
    for prefix, folder in (("sub-01", root / "sub-01" / "anat"), ("sub-02_ses-1", root / "sub-02" / "ses-1" / "anat"),
                           ("sub-02_ses-2", root / "sub-02" / "ses-2" / "anat")):
        folder.mkdir(parents=True)
        (folder / f"{prefix}_T1w.nii.gz").write_bytes(case["t1"].read_bytes())
        (folder / f"{prefix}_T2w.nii.gz").write_bytes(case["t2"].read_bytes())
    return root


def test_bids_dataset_to_a_derivative(registry: Path, case: dict[str, Path], tmp_path: Path) -> None:
    raw = _bids_tree(tmp_path / "raw", case)
    deriv = tmp_path / "raw" / "derivatives" / "mrsynth"
    result = run("--bids", raw, "--out-dir", deriv, "--target", "pd", "--json")
    assert result.exit_code == 0, result.stderr
    expected = [deriv / "sub-01" / "anat" / "sub-01_desc-synth_PDw.nii.gz",
                deriv / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_desc-synth_PDw.nii.gz",
                deriv / "sub-02" / "ses-2" / "anat" / "sub-02_ses-2_desc-synth_PDw.nii.gz"]
    assert all(p.is_file() for p in expected)
    for output in expected:
        sidecar = json.loads(output.with_name(output.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["mrsynth"]["SHA256"] == sha256_file(registry / "pd.safetensors")
        assert all(uri.startswith("bids:raw:") for uri in sidecar["Sources"]) and len(sidecar["Sources"]) == 2
        for uri in sidecar["Sources"]:
            assert (raw / uri.removeprefix("bids:raw:")).is_file()
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "mrsynth"
    assert "SourceDatasets" in description
    stamps = {p: p.stat().st_mtime_ns for p in deriv.rglob("*") if p.is_file()}
    again = run("--bids", raw, "--out-dir", deriv, "--target", "pd", "--json")
    assert {json.loads(line)["status"] for line in again.stdout.splitlines()} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in deriv.rglob("*") if p.is_file()} == stamps
    needs_out = run("--bids", raw)
    assert needs_out.exit_code == 2 and "--out-dir" in needs_out.stderr


def test_swapped_t1_and_t2_are_warned_about(registry: Path, case: dict[str, Path], tmp_path: Path) -> None:
    result = run("--t1", case["t2"], "--t2", case["t1"], "--out", tmp_path / "flair.nii.gz", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert any("swapped" in w for w in json.loads(result.stdout)["warnings"])
    straight = run("--t1", case["t1"], "--t2", case["t2"], "--out", tmp_path / "b-flair.nii.gz", "--json", "-q")
    assert not any("swapped" in w for w in json.loads(straight.stdout)["warnings"])


def test_qform_sform_disagreement_and_non_finite_voxels_are_warned_about(registry: Path, case: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    image = nib.load(str(case["t2"]))
    data = np.asanyarray(image.dataobj).astype(np.float32)
    data[0, 0, :3] = np.nan
    shifted = nib.Nifti1Image(data, image.affine, image.header.copy())
    shifted.set_data_dtype(np.float32)  # the crop is stored as integers, which cannot hold NaN
    qform = image.affine.copy()
    qform[:3, 3] += [0.2, 0.0, 0.0]
    shifted.set_qform(qform, code=1)
    shifted.set_sform(image.affine, code=1)
    t2 = tmp_path / "t2.nii.gz"
    nib.save(shifted, str(t2))
    result = run("--t1", case["t1"], "--t2", t2, "--out", tmp_path / "flair.nii.gz", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert any("qform and sform in the header disagree (by up to 0.20 mm" in w for w in warnings), warnings
    assert any("3 NaN or infinite voxels are treated as background" in w for w in warnings), warnings
