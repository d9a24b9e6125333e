"""BIDS input discovery and derivative output (mrsynth.io.bids), on a tiny synthetic dataset built per test.

The derivative checks are the spec's own rules, written out here: entity order in file names, a JSON sidecar
beside each image, the required dataset_description keys, and Sources URIs that resolve through DatasetLinks to
real files. The official bids-validator is run too when it is installed (it is not on the offline CI machines).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import nibabel as nib
import numpy as np
import pytest

from mrsynth import __version__
from mrsynth.contrasts import CONTRASTS
from mrsynth.errors import InputError
from mrsynth.io.bids import (BidsSubject, derivative_output, find_bids_subjects, write_dataset_description,
                             write_sidecar)
from mrsynth.io.subjects import Subject

# Entity order of the BIDS schema (src/schema/rules/entities.yaml), by key.
ENTITY_ORDER = ["sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc",
                "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space",
                "split", "recording", "chunk", "atlas", "seg", "scale", "res", "den", "label", "prov", "desc"]
DERIVATIVE_NAME = re.compile(r"^(sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_(T1w|T2w|PDw|FLAIR)\.nii\.gz$")
SCENARIO = "t1,t2->flair"


def _volume(path: Path, seed: int) -> Path:
    """A tiny random (non-zero) NIfTI, enough for discovery and for the validator to read a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).random((8, 8, 4), dtype=np.float32) + 0.1
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """sub-01 with ses-01 (T1w, ce-T1w, T2w) and ses-02 (two T1w runs, an acq- T1w, T2w, FLAIR);
    sub-02 without sessions (T1w as .nii, legacy PD, T2w); plus files that must be ignored."""
    root = tmp_path / "raw"
    _json(root / "dataset_description.json", {"Name": "tiny", "BIDSVersion": "1.10.0"})
    (root / "README").write_text("tiny test dataset\n")
    s1 = root / "sub-01" / "ses-01" / "anat"
    _volume(s1 / "sub-01_ses-01_T2w.nii.gz", 1)  # created before T1w: order must come from CONTRASTS, not disk
    _volume(s1 / "sub-01_ses-01_ce-gadolinium_T1w.nii.gz", 2)
    _volume(s1 / "sub-01_ses-01_T1w.nii.gz", 3)
    s2 = root / "sub-01" / "ses-02" / "anat"
    _volume(s2 / "sub-01_ses-02_run-2_T1w.nii.gz", 4)
    _volume(s2 / "sub-01_ses-02_run-1_T1w.nii.gz", 5)
    _volume(s2 / "sub-01_ses-02_acq-fast_T2w.nii.gz", 6)
    _volume(s2 / "sub-01_ses-02_T2w.nii.gz", 7)
    _volume(s2 / "sub-01_ses-02_FLAIR.nii.gz", 8)
    _json(s2 / "sub-01_ses-02_FLAIR.json", {"RepetitionTime": 9.0})
    bold = nib.Nifti1Image(np.random.default_rng(9).random((8, 8, 4, 3), dtype=np.float32) + 0.1, np.eye(4))
    bold.header.set_zooms((1.0, 1.0, 1.0, 2.0))
    bold.header.set_xyzt_units("mm", "sec")
    (root / "sub-01" / "ses-02" / "func").mkdir(parents=True)
    nib.save(bold, root / "sub-01" / "ses-02" / "func" / "sub-01_ses-02_task-rest_bold.nii.gz")  # valid, not anat
    _json(root / "task-rest_bold.json", {"TaskName": "rest", "RepetitionTime": 2.0})
    a2 = root / "sub-02" / "anat"
    _volume(a2 / "sub-02_T1w.nii", 10)
    _volume(a2 / "sub-02_PD.nii.gz", 11)
    _volume(a2 / "sub-02_T2w.nii.gz", 12)
    _volume(a2 / "sub-02_T2starw.nii.gz", 13)  # a contrast mrsynth does not use
    # Never inputs: derivatives, dot-folders, hidden files.
    _volume(root / "derivatives" / "other" / "sub-03" / "anat" / "sub-03_T1w.nii.gz", 14)
    _volume(root / ".heudiconv" / "sub-04" / "anat" / "sub-04_T1w.nii.gz", 15)
    _volume(a2 / ".sub-02_FLAIR.nii.gz", 16)
    return root


def _by_name(subjects: list[BidsSubject]) -> dict[str, BidsSubject]:
    return {s.name: s for s in subjects}


def test_discovers_one_subject_per_session_with_bids_identity(dataset: Path) -> None:
    subjects = find_bids_subjects(dataset)
    assert [s.name for s in subjects] == ["sub-01_ses-01", "sub-01_ses-02", "sub-02"]
    assert [(s.subject, s.session) for s in subjects] == [("01", "01"), ("01", "02"), ("02", None)]
    assert all(isinstance(s, Subject) and s.output is None for s in subjects)  # usable by the batch runner
    found = _by_name(subjects)
    assert list(found["sub-01_ses-01"].inputs) == ["t1", "t1c", "t2"]  # CONTRASTS order, not file order
    assert found["sub-01_ses-01"].inputs["t1c"].name == "sub-01_ses-01_ce-gadolinium_T1w.nii.gz"
    assert found["sub-01_ses-01"].source_entities["t1c"] == {"sub": "01", "ses": "01", "ce": "gadolinium"}
    assert list(found["sub-01_ses-02"].inputs) == ["t1", "t2", "flair"]
    assert {c: p.name for c, p in found["sub-02"].inputs.items()} == {
        "t1": "sub-02_T1w.nii", "t2": "sub-02_T2w.nii.gz", "pd": "sub-02_PD.nii.gz"}  # legacy PD suffix
    assert found["sub-01_ses-01"].warnings == [] and found["sub-02"].warnings == []


def test_ignores_derivatives_dot_folders_and_hidden_files(dataset: Path) -> None:
    every_input = [p for s in find_bids_subjects(dataset) for p in s.inputs.values()]
    assert all("derivatives" not in p.parts and not any(part.startswith(".") for part in p.parts[-4:])
               for p in every_input)
    assert not {"03", "04"} & {s.subject for s in find_bids_subjects(dataset)}


def test_several_candidates_pick_the_plainest_and_warn(dataset: Path) -> None:
    subject = _by_name(find_bids_subjects(dataset))["sub-01_ses-02"]
    assert subject.inputs["t1"].name == "sub-01_ses-02_run-1_T1w.nii.gz"  # lowest run
    assert subject.inputs["t2"].name == "sub-01_ses-02_T2w.nii.gz"  # no acq- beats acq-fast
    assert len(subject.warnings) == 2
    assert "run-2_T1w" in subject.warnings[0] and "acq-fast_T2w" in subject.warnings[1]
    assert find_bids_subjects(dataset)[1].inputs == subject.inputs  # deterministic


def test_no_run_beats_run_and_post_contrast_non_t1_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _json(root / "dataset_description.json", {"Name": "x", "BIDSVersion": "1.10.0"})
    anat = root / "sub-A" / "anat"
    for i, name in enumerate(["sub-A_run-1_T1w.nii.gz", "sub-A_T1w.nii.gz", "sub-A_ce-gd_FLAIR.nii.gz",
                              "sub-A_ce-gd_T1w.nii.gz"]):
        _volume(anat / name, i)
    (subject,) = find_bids_subjects(root)
    assert {c: p.name for c, p in subject.inputs.items()} == {"t1": "sub-A_T1w.nii.gz", "t1c": "sub-A_ce-gd_T1w.nii.gz"}
    assert any("sub-A_ce-gd_FLAIR.nii.gz" in w for w in subject.warnings)
    assert any("sub-A_run-1_T1w.nii.gz" in w for w in subject.warnings)


def test_not_a_bids_dataset_names_the_folder(tmp_path: Path) -> None:
    _volume(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz", 0)
    with pytest.raises(InputError, match="not a BIDS dataset") as error:
        find_bids_subjects(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_dataset_without_anatomical_scans_is_an_error(tmp_path: Path) -> None:
    _json(tmp_path / "dataset_description.json", {"Name": "x", "BIDSVersion": "1.10.0"})
    _volume(tmp_path / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", 0)
    with pytest.raises(InputError, match="no T1w"):
        find_bids_subjects(tmp_path)


@pytest.mark.parametrize("misplaced", ["sub-02/anat/sub-01_T1w.nii.gz", "sub-01/ses-01/anat/sub-01_ses-02_T1w.nii.gz",
                                       "sub-01/anat/sub-01_ses-01_T1w.nii.gz",
                                       "sub-01/ses-01/anat/sub-01_T1w.nii.gz"])
def test_file_entities_contradicting_folders_raise(dataset: Path, misplaced: str) -> None:
    _volume(dataset / misplaced, 0)
    with pytest.raises(InputError, match="do not match its folder") as error:
        find_bids_subjects(dataset)
    assert error.value.source == str(dataset / misplaced)


@pytest.mark.parametrize(("target", "suffix"), [("t1", "desc-synth_T1w"), ("t1c", "ce-gadolinium_desc-synth_T1w"),
                                                ("t2", "desc-synth_T2w"), ("pd", "desc-synth_PDw"),
                                                ("flair", "desc-synth_FLAIR"), ("T2w", "desc-synth_T2w")])
def test_derivative_output_paths(dataset: Path, tmp_path: Path, target: str, suffix: str) -> None:
    found = _by_name(find_bids_subjects(dataset))
    deriv = tmp_path / "deriv"
    with_session = derivative_output(deriv, found["sub-01_ses-02"], target)
    without = derivative_output(deriv, found["sub-02"], target)
    assert with_session == deriv / "sub-01" / "ses-02" / "anat" / f"sub-01_ses-02_{suffix}.nii.gz"
    assert without == deriv / "sub-02" / "anat" / f"sub-02_{suffix}.nii.gz"
    for path in (with_session, without):
        _assert_entity_order(path.name)


def test_derivative_output_refuses_unknown_target(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown contrast"):
        derivative_output(tmp_path, find_bids_subjects(dataset)[0], "dwi")


def test_sidecar_records_model_and_sources_that_resolve(dataset: Path) -> None:
    deriv = dataset / "derivatives" / "mrsynth"
    description = write_dataset_description(deriv, dataset)
    subject = _by_name(find_bids_subjects(dataset))["sub-01_ses-02"]
    output = derivative_output(deriv, subject, "flair")
    output.parent.mkdir(parents=True)
    sidecar = write_sidecar(output, subject, dataset, "agi-ixi", "ab" * 32, SCENARIO)
    assert sidecar == output.parent / "sub-01_ses-02_desc-synth_FLAIR.json"
    data = json.loads(sidecar.read_text())
    assert data["Sources"] == ["bids:raw:sub-01/ses-02/anat/sub-01_ses-02_run-1_T1w.nii.gz",
                               "bids:raw:sub-01/ses-02/anat/sub-01_ses-02_T2w.nii.gz"]
    assert data["mrsynth"] == {"Version": __version__, "Model": "agi-ixi", "SHA256": "ab" * 32, "Scenario": SCENARIO}
    assert "agi-ixi" in data["Description"] and "synthesized" in data["Description"]
    resolved = [_resolve_uri(description, uri) for uri in data["Sources"]]
    assert resolved == [subject.inputs["t1"].resolve(), subject.inputs["t2"].resolve()]
    assert not list(output.parent.glob(".*"))  # atomic write leaves no temp file
    # Rewritten with the output (a rerun with another model): replaced, not refused.
    write_sidecar(output, subject, dataset, "other", "cd" * 32, SCENARIO)
    assert json.loads(sidecar.read_text())["mrsynth"]["Model"] == "other"


def test_a_brain_mask_in_anat_is_the_subjects_mask_and_a_source_of_the_derivative(dataset: Path) -> None:
    anat = dataset / "sub-01" / "ses-02" / "anat"
    _volume(anat / "sub-01_ses-02_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz", 7)  # a template's grid
    assert _by_name(find_bids_subjects(dataset))["sub-01_ses-02"].mask is None
    plain = _volume(anat / "sub-01_ses-02_desc-brain_mask.nii.gz", 8)
    _volume(anat / "sub-01_ses-02_acq-hdbet_desc-brain_mask.nii.gz", 9)
    subjects = _by_name(find_bids_subjects(dataset))
    subject = subjects["sub-01_ses-02"]
    assert subject.mask == plain and "mask" not in " ".join(p.name for p in subject.inputs.values())
    assert any("2 brain masks, using sub-01_ses-02_desc-brain_mask.nii.gz" in w for w in subject.warnings)
    assert subjects["sub-01_ses-01"].mask is None and subjects["sub-02"].mask is None
    output = derivative_output(dataset / "derivatives" / "mrsynth", subject, "flair")
    output.parent.mkdir(parents=True)
    sidecar = write_sidecar(output, subject, dataset, "agi-ixi", "ab" * 32, SCENARIO)
    assert json.loads(sidecar.read_text())["Sources"][-1] == \
        "bids:raw:sub-01/ses-02/anat/sub-01_ses-02_desc-brain_mask.nii.gz"


def test_sidecar_refuses_a_scenario_the_subject_cannot_feed(dataset: Path, tmp_path: Path) -> None:
    subject = _by_name(find_bids_subjects(dataset))["sub-02"]  # no flair, no t1c
    with pytest.raises(InputError, match="t1c"):
        write_sidecar(tmp_path / "x_T1w.nii.gz", subject, dataset, "m", "0" * 64, "t1c,t2,flair->t1")


def test_sidecar_uri_keeps_the_bids_path_of_annexed_symlinks(tmp_path: Path) -> None:
    """DataLad datasets store scans as symlinks into .git/annex; the URI must name the BIDS path, not the blob."""
    root = tmp_path / "ds"
    _json(root / "dataset_description.json", {"Name": "x", "BIDSVersion": "1.10.0"})
    blob = _volume(root / ".git" / "annex" / "objects" / "ab" / "blob.nii.gz", 0)
    for name in ("sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz"):
        (root / "sub-01" / "anat").mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, root / "sub-01" / "anat"), root / "sub-01" / "anat" / name)
    (subject,) = find_bids_subjects(root)
    sidecar = write_sidecar(tmp_path / "o_FLAIR.nii.gz", subject, root, "m", "0" * 64, SCENARIO)
    assert json.loads(sidecar.read_text())["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz",
                                                          "bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]


def test_dataset_description_written_once_and_never_clobbered(dataset: Path, tmp_path: Path) -> None:
    deriv = tmp_path / "out" / "mrsynth"  # missing folders are created
    path = write_dataset_description(deriv, dataset)
    data = json.loads(path.read_text())
    assert data["DatasetType"] == "derivative" and data["BIDSVersion"] == "1.10.0" and data["Name"]
    assert data["GeneratedBy"][0]["Name"] == "mrsynth" and data["GeneratedBy"][0]["Version"] == __version__
    assert "CodeURL" not in data["GeneratedBy"][0]
    assert data["DatasetLinks"]["raw"] == "../../raw/" and data["SourceDatasets"][0]["URL"] == "bids:raw:"
    assert (deriv / data["DatasetLinks"]["raw"] / "dataset_description.json").is_file()
    # A user's edits (or another run's) survive a second call.
    data["Name"] = "edited by hand"
    path.write_text(json.dumps(data))
    assert write_dataset_description(deriv, dataset) == path
    assert json.loads(path.read_text())["Name"] == "edited by hand"


def test_dataset_description_refuses_raw_or_foreign_datasets(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a derivative dataset"):
        write_dataset_description(dataset, dataset)  # --out-dir pointed at the raw dataset
    other = tmp_path / "other"
    _json(other / "dataset_description.json", {"Name": "o", "BIDSVersion": "1.10.0"})
    deriv = tmp_path / "deriv"
    write_dataset_description(deriv, other)
    with pytest.raises(InputError, match="derivative of another dataset"):
        write_dataset_description(deriv, dataset)
    before = (dataset / "dataset_description.json").read_text()
    assert json.loads(before) == {"Name": "tiny", "BIDSVersion": "1.10.0"}  # raw untouched


def _synthesize_missing(dataset: Path) -> tuple[Path, list[Path]]:
    """Fake-synthesize every missing contrast into DATASET/derivatives/mrsynth as the batch runner would."""
    deriv = dataset / "derivatives" / "mrsynth"
    description = write_dataset_description(deriv, dataset)
    written = []
    for subject in find_bids_subjects(dataset):
        inputs = [c for c in ("t1", "t2") if c in subject.inputs]
        for target in [c for c in CONTRASTS if c not in subject.inputs]:
            output = derivative_output(deriv, subject, target)
            output.parent.mkdir(parents=True, exist_ok=True)
            _volume(output, len(written))
            write_sidecar(output, subject, dataset, "agi", "f" * 64, f"{','.join(inputs)}->{target}")
            written.append(output)
    return description, written


def test_full_derivative_tree_follows_the_spec(dataset: Path) -> None:
    """Check the derivative tree by the spec's rules; the raw dataset must still be discovered unchanged (its own
    derivatives folder is not an input)."""
    before = find_bids_subjects(dataset)
    description, written = _synthesize_missing(dataset)
    deriv = description.parent
    assert len(written) == 6  # ses-01: pd, flair; ses-02: t1c, pd; sub-02: t1c, flair
    images = sorted(deriv.rglob("*.nii.gz"))
    assert images == sorted(written)
    for image in images:
        _assert_entity_order(image.name)
        sidecar = image.with_name(image.name.removesuffix(".nii.gz") + ".json")
        assert sidecar.is_file()
        for uri in json.loads(sidecar.read_text())["Sources"]:
            assert _resolve_uri(description, uri).is_file()
        sub = re.match(r"sub-([A-Za-z0-9]+)", image.name)[1]
        ses = re.search(r"_ses-([A-Za-z0-9]+)", image.name)
        assert image.relative_to(deriv).parts[:-1] == (f"sub-{sub}", *([f"ses-{ses[1]}"] if ses else []), "anat")
    required = {"Name", "BIDSVersion", "DatasetType", "GeneratedBy"}
    assert required <= set(json.loads(description.read_text()))
    assert [(s.name, s.inputs) for s in find_bids_subjects(dataset)] == [(s.name, s.inputs) for s in before]


def test_bids_validator_accepts_dataset_with_derivatives(dataset: Path) -> None:
    validator = shutil.which("bids-validator")
    if validator is None:
        pytest.skip("bids-validator is not installed (offline machine); the spec's rules are checked above instead")
    description, _ = _synthesize_missing(dataset)
    # The legacy validator (1.x, the one npm ships) checks raw datasets: the input dataset, with the derivative
    # inside it (it skips derivatives/), and the derivative's dataset_description.json against the schema, with
    # its desc- files hidden by a .bidsignore because 1.x would call every derivative file "not part of BIDS"
    # (their names are checked against the spec's entity rules above).
    (description.parent / ".bidsignore").write_text("*_desc-synth_*\n")
    for root, expected in ((dataset, set()), (description.parent, {45})):  # 45: no sub-* left once ignored
        result = subprocess.run([validator, "--json", str(root)], capture_output=True, text=True, timeout=300)
        errors = json.loads(result.stdout)["issues"]["errors"]
        assert {e["code"] for e in errors} == expected, json.dumps(errors, indent=1)[:3000]


def _assert_entity_order(filename: str) -> None:
    match = DERIVATIVE_NAME.match(filename)
    assert match, filename
    keys = [pair.split("-", 1)[0] for pair in match[1].split("_")]
    assert all(k in ENTITY_ORDER for k in keys), keys
    positions = [ENTITY_ORDER.index(k) for k in keys]
    assert positions == sorted(positions) and len(set(keys)) == len(keys), filename


def _resolve_uri(description: Path, uri: str) -> Path:
    """bids:<name>:<path> -> file, through DatasetLinks of the derivative's dataset_description (spec rules)."""
    scheme, name, relative = uri.split(":", 2)
    assert scheme == "bids" and not relative.startswith("/")
    link = json.loads(description.read_text())["DatasetLinks"][name]
    parsed = urlparse(link)
    base = Path(unquote(parsed.path)) if parsed.scheme == "file" else description.parent / link
    return (base / relative).resolve()
