"""Recognise raw dataset layouts (IXI, BraTS, a CSV "folder" list) and turn them into subjects -> contrast files.

Why a separate module: discovery is pure file-name logic that must be testable without reading a single voxel,
and its verdicts (which subjects are complete, which are skipped and why) decide the split before any heavy work
starts, so a subject that later fails to load does not reshuffle the others.
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mrsynth.contrasts import CONTRASTS
from mrsynth.errors import InputError

DATASETS = ("ixi", "brats", "folder")

# Contrasts each dataset provides, in canonical order.
DATASET_CONTRASTS: dict[str, tuple[str, ...]] = {
    "ixi": ("t1", "t2", "pd"),
    "brats": ("t1", "t1c", "t2", "flair"),
}

# Subject ids become file names in the store.
SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# IXI file names: IXI002-Guys-0828-T1.nii.gz (site names are letters; MRA and DTI files are not contrasts we use).
IXI_PATTERN = re.compile(r"^(IXI\d{3}-[A-Za-z]+-\d{4})-(T1|T2|PD)\.nii(\.gz)?$")
IXI_CONTRASTS = {"T1": "t1", "T2": "t2", "PD": "pd"}

# BraTS 2023 suffixes (-t1n, -t1c, -t2w, -t2f) and the BraTS 2018-2021 ones (_t1, _t1ce, _t2, _flair).
BRATS_PATTERN = re.compile(r"^(.+?)[-_](t1n|t1c|t1ce|t2w|t2f|t1|t2|flair)\.nii(\.gz)?$", re.IGNORECASE)
BRATS_CONTRASTS = {"t1n": "t1", "t1": "t1", "t1c": "t1c", "t1ce": "t1c", "t2w": "t2", "t2": "t2",
                   "t2f": "flair", "flair": "flair"}


@dataclass
class SubjectFiles:
    """One subject's contrast files (canonical contrast name -> path), in the order of CONTRASTS."""

    subject: str
    files: dict[str, Path]


@dataclass
class Discovery:
    """What a layout reader found: complete subjects, and the subjects it had to skip with the reason."""

    dataset: str
    root: Path  # the one root, or the deepest folder holding all of them (manifest paths are relative to it)
    contrasts: list[str]
    roots: list[Path] = field(default_factory=list)
    subjects: list[SubjectFiles] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def subject_ids(self) -> list[str]:
        return [s.subject for s in self.subjects]


def canonical_order(contrasts: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """Contrasts sorted in canonical order (t1, t1c, t2, pd, flair), the store's channel order."""
    return [c for c in CONTRASTS if c in set(contrasts)]


def discover(dataset: str, root: str | Path | Sequence[str | Path], contrasts: list[str] | None = None) -> Discovery:
    """Find the subjects of ``dataset`` under ``root`` (for ``folder``, ``root`` is the CSV file).

    ``root`` may also be several dataset folders (e.g. BraTS 2018 and BraTS 2023 downloads) read into one
    subject list; a subject id found under two of them is ambiguous and skipped with both folders named.
    ``contrasts`` limits what is required and stored (e.g. from a scenario); by default every contrast the
    dataset provides is required. Subjects missing a required contrast, or with two files for one contrast,
    are listed in ``Discovery.skipped`` by name.
    """
    roots = [Path(r) for r in ([root] if isinstance(root, (str, Path)) else root)]
    if not roots:
        raise InputError("--root", "no dataset folder given")
    if dataset == "folder" and len(roots) > 1:
        raise InputError("--csv", "the folder dataset reads one CSV", "list every subject in one CSV file")
    if len(set(r.resolve() for r in roots)) != len(roots):
        raise InputError("--root", "the same folder is given twice", "give each dataset folder once")
    found: dict[str, dict[str, Path]] = {}
    problems: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for one in roots:
        part, available, part_problems = _scan(dataset, one)
        for subject in sorted(set(part) | set(part_problems)):
            if subject in origin:
                problems[subject] = f"subject id found under two roots: {origin[subject]} and {one}"
                continue
            origin[subject] = one
            if subject in part_problems:
                problems[subject] = part_problems[subject]
            else:
                found[subject] = part[subject]
        if not part and not part_problems:
            what = "rows" if dataset == "folder" else f"{dataset} files"
            raise InputError(one, f"no {what} recognised", _layout_hint(dataset))

    if contrasts is None:
        wanted = canonical_order(available)
    else:
        unknown = [c for c in contrasts if c not in available]
        if unknown:
            raise InputError("--scenario", f"{dataset} has no {', '.join(unknown)} contrast",
                             f"available: {', '.join(canonical_order(available))}")
        wanted = canonical_order(contrasts)

    common = roots[0] if len(roots) == 1 else Path(os.path.commonpath([r.resolve() for r in roots]))
    result = Discovery(dataset=dataset, root=common, contrasts=wanted, roots=roots)
    for subject in sorted(set(found) | set(problems)):
        if subject in problems:
            result.skipped[subject] = problems[subject]
            continue
        if not SUBJECT_ID.match(subject):
            result.skipped[subject] = "subject id is not usable as a file name (letters, digits, . _ - only)"
            continue
        files = found[subject]
        missing = [c for c in wanted if c not in files]
        if missing:
            result.skipped[subject] = f"missing contrast {', '.join(missing)}"
            continue
        result.subjects.append(SubjectFiles(subject, {c: files[c] for c in wanted}))
    return result


def _scan(dataset: str, root: Path) -> tuple[dict[str, dict[str, Path]], list[str], dict[str, str]]:
    """One root's subjects -> files, the contrasts its layout provides, and the subjects it found ambiguous."""
    if dataset == "folder":
        if not root.is_file():
            raise InputError(root, "CSV file not found", "give --csv with columns subject,t1,t2,...")
        return _read_folder_csv(root)
    if dataset not in DATASET_CONTRASTS:
        raise InputError("--dataset", f"unknown dataset {dataset!r}", f"choose one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise InputError(root, "dataset folder not found", "check --root")
    found, problems = (_scan_ixi if dataset == "ixi" else _scan_brats)(root)
    return found, list(DATASET_CONTRASTS[dataset]), problems


def _layout_hint(dataset: str) -> str:
    return {
        "ixi": "expected files like IXI002-Guys-0828-T1.nii.gz (one folder or per-contrast folders)",
        "brats": "expected <case>/<case>-t1n.nii.gz ... -t2f.nii.gz (or _t1/_t1ce/_t2/_flair)",
        "folder": "expected a CSV header subject,t1,t2,... and one row per subject",
    }[dataset]


def _add(found: dict[str, dict[str, Path]], problems: dict[str, str], subject: str, contrast: str, path: Path) -> None:
    """Record one file; a second file for the same subject and contrast makes the subject ambiguous."""
    files = found[subject]
    if contrast in files and files[contrast] != path:
        problems[subject] = f"two files for {contrast}: {files[contrast].name} and {path.name}"
    files[contrast] = path


def _scan_ixi(root: Path) -> tuple[dict[str, dict[str, Path]], dict[str, str]]:
    """IXI files anywhere under root (IXI-T1/, IXI-T2/, IXI-PD/ as distributed, or all in one folder)."""
    found: dict[str, dict[str, Path]] = defaultdict(dict)
    problems: dict[str, str] = {}
    for path in sorted(root.rglob("IXI*.nii*")):
        match = IXI_PATTERN.match(path.name)
        if match and path.is_file():
            _add(found, problems, match.group(1), IXI_CONTRASTS[match.group(2)], path)
    return dict(found), problems


def _scan_brats(root: Path) -> tuple[dict[str, dict[str, Path]], dict[str, str]]:
    """BraTS cases: each case is the folder holding its contrast files; the case id is that folder's name."""
    found: dict[str, dict[str, Path]] = defaultdict(dict)
    problems: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for path in sorted(root.rglob("*.nii*")):
        match = BRATS_PATTERN.match(path.name)
        if not match or not path.is_file():
            continue
        case = path.parent.name if path.parent != root else match.group(1)
        if folders.setdefault(case, path.parent) != path.parent:
            problems[case] = f"case name used by two folders: {folders[case]} and {path.parent}"
            continue
        _add(found, problems, case, BRATS_CONTRASTS[match.group(2).lower()], path)
    return dict(found), problems


def _read_folder_csv(csv_path: Path) -> tuple[dict[str, dict[str, Path]], list[str], dict[str, str]]:
    """CSV ``subject,t1,t2,pd,...``: columns are canonical contrasts, cells paths (relative to the CSV's folder)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(csv_path, f"cannot read CSV ({exc})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(csv_path, "CSV is empty", _layout_hint("folder"))
    header = [h.strip().lower() for h in rows[0]]
    if not header or header[0] != "subject":
        raise InputError(csv_path, f"first column must be 'subject', got {rows[0][0]!r}", _layout_hint("folder"))
    columns = header[1:]
    bad = [c for c in columns if c not in CONTRASTS]
    if bad or not columns or len(set(columns)) != len(columns):
        raise InputError(csv_path, f"contrast columns must be distinct names among {', '.join(CONTRASTS)}",
                         f"got {', '.join(columns) or 'none'}")
    found: dict[str, dict[str, Path]] = {}
    problems: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        subject = row[0].strip() if row else ""
        if not subject:
            raise InputError(csv_path, f"row {number} has no subject id")
        if subject in found or subject in problems:
            problems[subject] = f"subject listed twice in {csv_path.name}"
            continue
        files = {}
        for contrast, cell in zip(columns, row[1:]):
            if cell.strip():
                path = Path(cell.strip()).expanduser()
                files[contrast] = path if path.is_absolute() else csv_path.parent / path
        found[subject] = files
    return found, columns, problems
