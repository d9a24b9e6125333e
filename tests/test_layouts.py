"""Layout recognition (IXI, BraTS 2023 and older, CSV folder) and subject-level splits; no voxel is read here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrsynth.data.layouts import discover
from mrsynth.data.splits import assign_split, parse_split, read_split_file, split_sizes
from mrsynth.errors import InputError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_ixi_one_folder_maps_contrasts_and_lists_incomplete_subjects(tmp_path):
    for contrast in ("T1", "T2", "PD"):
        touch(tmp_path / f"IXI002-Guys-0828-{contrast}.nii.gz")
    touch(tmp_path / "IXI012-HH-1211-T1.nii.gz")
    touch(tmp_path / "IXI012-HH-1211-T2.nii.gz")
    touch(tmp_path / "IXI012-HH-1211-MRA.nii.gz")  # not a contrast we use: ignored
    touch(tmp_path / "notes.txt")
    found = discover("ixi", tmp_path)
    assert found.contrasts == ["t1", "t2", "pd"]
    assert found.subject_ids() == ["IXI002-Guys-0828"]
    assert found.subjects[0].files["pd"].name == "IXI002-Guys-0828-PD.nii.gz"
    assert found.skipped == {"IXI012-HH-1211": "missing contrast pd"}


def test_ixi_per_contrast_folders_and_scenario_limits_what_is_required(tmp_path):
    touch(tmp_path / "IXI-T1" / "IXI012-HH-1211-T1.nii.gz")
    touch(tmp_path / "IXI-T2" / "IXI012-HH-1211-T2.nii")
    found = discover("ixi", tmp_path, contrasts=["t2", "t1"])
    assert found.contrasts == ["t1", "t2"]  # canonical order, whatever the scenario's
    assert found.subject_ids() == ["IXI012-HH-1211"] and not found.skipped


def test_ixi_duplicate_file_for_one_contrast_is_reported(tmp_path):
    for contrast in ("T1", "T2", "PD"):
        touch(tmp_path / "IXI-all" / f"IXI002-Guys-0828-{contrast}.nii.gz")
    touch(tmp_path / "IXI-T1" / "IXI002-Guys-0828-T1.nii.gz")
    found = discover("ixi", tmp_path)
    assert found.subjects == []
    assert "two files for t1" in found.skipped["IXI002-Guys-0828"]


def test_brats_2023_and_older_names(tmp_path):
    for case in ("BraTS-GLI-00000-000", "BraTS-MEN-00004-000"):
        for suffix in ("t1n", "t1c", "t2w", "t2f", "seg"):
            touch(tmp_path / "train" / case / f"{case}-{suffix}.nii.gz")
    old = "BraTS2021_00017"
    for suffix in ("t1", "t1ce", "t2", "flair", "seg"):
        touch(tmp_path / old / f"{old}_{suffix}.nii.gz")
    touch(tmp_path / "BraTS-GLI-00009-000" / "BraTS-GLI-00009-000-t1n.nii.gz")
    found = discover("brats", tmp_path)
    assert found.subject_ids() == ["BraTS-GLI-00000-000", "BraTS-MEN-00004-000", "BraTS2021_00017"]
    old_files = {c: p.name for c, p in found.subjects[2].files.items()}
    assert old_files == {"t1": f"{old}_t1.nii.gz", "t1c": f"{old}_t1ce.nii.gz", "t2": f"{old}_t2.nii.gz",
                         "flair": f"{old}_flair.nii.gz"}
    assert found.subjects[0].files["flair"].name.endswith("-t2f.nii.gz")
    assert found.skipped == {"BraTS-GLI-00009-000": "missing contrast t1c, t2, flair"}


def test_several_roots_make_one_subject_list_and_a_shared_id_is_skipped(tmp_path):
    """BraTS 2018 and 2023 downloads read together; an id under two roots is ambiguous, never silently merged."""
    new, old = tmp_path / "brats2023", tmp_path / "brats2018"
    for case in ("BraTS-GLI-00000-000", "Shared"):
        for suffix in ("t1n", "t1c", "t2w", "t2f"):
            touch(new / case / f"{case}-{suffix}.nii.gz")
    for case in ("Brats18_CBICA_AAB_1", "Shared"):
        for suffix in ("t1", "t1ce", "t2", "flair"):
            touch(old / case / f"{case}_{suffix}.nii.gz")
    found = discover("brats", [new, old])
    assert found.subject_ids() == ["BraTS-GLI-00000-000", "Brats18_CBICA_AAB_1"]
    assert found.subjects[1].files["t1c"].name == "Brats18_CBICA_AAB_1_t1ce.nii.gz"
    assert set(found.skipped) == {"Shared"} and "two roots" in found.skipped["Shared"]
    assert found.roots == [new, old] and found.root == tmp_path
    with pytest.raises(InputError, match="given twice"):
        discover("brats", [new, new])
    with pytest.raises(InputError, match="no brats files"):
        discover("brats", [new, touch(tmp_path / "empty" / "x.txt").parent])


def test_brats_real_sample_layout(shared_data):
    found = discover("brats", shared_data / "brats-style")
    assert found.subject_ids() == ["TCGA-DU-7294", "TCGA-FG-6692"]
    assert found.contrasts == ["t1", "t1c", "t2", "flair"]
    assert found.subjects[1].files["t2"].name == "TCGA-FG-6692-t2w.nii.gz"


def test_folder_csv_relative_paths_and_missing_cells(tmp_path):
    (tmp_path / "list.csv").write_text("subject,t1,t2,pd\nA,a1.nii,a2.nii,a3.nii\nB,b1.nii,b2.nii,\n")
    found = discover("folder", tmp_path / "list.csv")
    assert found.contrasts == ["t1", "t2", "pd"]
    assert found.subject_ids() == ["A"]
    assert found.subjects[0].files["t2"] == tmp_path / "a2.nii"
    assert found.skipped == {"B": "missing contrast pd"}


@pytest.mark.parametrize("text, problem", [
    ("name,t1\nA,a.nii\n", "first column must be 'subject'"),
    ("subject,t1,T1w\nA,a.nii,b.nii\n", "contrast columns"),
])
def test_folder_csv_bad_header_is_a_usage_error(tmp_path, text, problem):
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(InputError, match=problem):
        discover("folder", tmp_path / "list.csv")


def test_nothing_recognised_and_unknown_contrast_are_usage_errors(tmp_path):
    touch(tmp_path / "scan.nii.gz")
    with pytest.raises(InputError, match="no ixi files recognised"):
        discover("ixi", tmp_path)
    with pytest.raises(InputError, match="dataset folder not found"):
        discover("brats", tmp_path / "missing")
    touch(tmp_path / "IXI002-Guys-0828-T1.nii.gz")
    with pytest.raises(InputError, match="ixi has no flair"):
        discover("ixi", tmp_path, contrasts=["t1", "flair"])


def test_parse_split_counts_and_fractions():
    assert parse_split("500,37,40") == ("counts", (500, 37, 40))
    assert parse_split("0.8,0.1,0.1") == ("fractions", (0.8, 0.1, 0.1))
    for bad in ("1,2", "a,b,c", "-1,1,1", "0.9,0.2,0.1", "0,0,0"):
        with pytest.raises(InputError):
            parse_split(bad)


def test_split_sizes_fit_scale_and_clip():
    assert split_sizes("500,37,40", 577) == ((500, 37, 40), None)
    assert split_sizes("500,40,40", 1251) == ((500, 40, 40), None)  # the rest stays unused, as in the paper
    assert split_sizes("1,1,0", 2) == ((1, 1, 0), None)
    sizes, note = split_sizes("500,40,40", 10)
    assert sizes == (8, 1, 1) and "scaled down" in note
    assert split_sizes("500,40,40", 2)[0] == (2, 0, 0)
    assert split_sizes("0.8,0.1,0.1", 20) == ((16, 2, 2), None)
    assert split_sizes("0.8,0.1,0.1", 3)[0] == (3, 0, 0)
    assert sum(split_sizes("0.5,0.25,0.25", 7)[0]) == 7


def test_same_seed_same_split_other_seed_other_split():
    subjects = [f"S{i:03d}" for i in range(40)]
    first, _ = assign_split(subjects, "30,5,5", seed=1)
    again, _ = assign_split(list(reversed(subjects)), "30,5,5", seed=1)
    other, _ = assign_split(subjects, "30,5,5", seed=2)
    assert first == again
    assert first != other
    assert [sum(v == name for v in first.values()) for name in ("train", "val", "test")] == [30, 5, 5]
    # a new subject only shifts the ranking by one: at most one subject crosses each of the 3 boundaries
    grown, _ = assign_split([*subjects, "S999"], "30,5,5", seed=1)
    assert sum(first.get(s) != grown.get(s) for s in subjects) <= 3


def test_split_file_json_and_csv(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"train": ["A", "B"], "test": ["C"]}))
    (tmp_path / "b.json").write_text(json.dumps({"A": "train", "B": "val"}))
    (tmp_path / "c.csv").write_text("subject,split\nA,train\nB,Test\n")
    assert read_split_file(tmp_path / "a.json") == {"A": "train", "B": "train", "C": "test"}
    assert read_split_file(tmp_path / "b.json") == {"A": "train", "B": "val"}
    assert read_split_file(tmp_path / "c.csv") == {"A": "train", "B": "test"}
    (tmp_path / "d.csv").write_text("subject,split\nA,holdout\n")
    with pytest.raises(InputError, match="holdout"):
        read_split_file(tmp_path / "d.csv")
