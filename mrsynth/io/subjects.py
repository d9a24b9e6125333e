"""Which files belong to which subject: contrast names, subject lists (CSV) and dataset folders.

Batch synthesis takes either a CSV (one row per subject, one column per contrast) or a folder whose file names
follow a known layout: BraTS 2023 (``<case>-t1n.nii.gz``), IXI (``IXI002-Guys-0828-T1.nii.gz``), BIDS-like
(``sub-01[_ses-1]_T1w.nii.gz``) or a plain ``<case>_<contrast>.nii.gz``. In a folder, a file whose name holds
``mask`` and starts with a subject's name (``<case>-mask.nii.gz``, ``<case>_brainmask.nii.gz``,
``sub-01_desc-brain_mask.nii.gz``) is that subject's brain mask.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mrsynth.contrasts import CONTRASTS, canonical_contrast
from mrsynth.errors import InputError

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".mgz", ".mgh")
SUBJECT_COLUMNS = ("subject", "case", "id")
OUTPUT_COLUMNS = ("out", "output")
MASK_COLUMNS = ("mask", "brain_mask")
MASK_WORD = "mask"  # in a folder: brainmask, brain_mask, -mask, desc-brain_mask
SEPARATORS = ("-", "_", ".")  # what follows a subject's name in a mask's file name

_SUFFIX = r"\.(?:nii\.gz|nii|mha|mhd|nrrd|mgz|mgh)$"
LAYOUTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("brats", re.compile(r"^(?P<case>.+)-(?P<contrast>t1n|t1c|t2w|t2f)" + _SUFFIX)),
    ("ixi", re.compile(r"^(?P<case>IXI\d+-[A-Za-z]+-\d+)-(?P<contrast>T1|T2|PD)" + _SUFFIX)),
    ("bids", re.compile(r"^(?P<case>sub-[A-Za-z0-9]+(?:_ses-[A-Za-z0-9]+)?)(?P<entities>(?:_[a-z]+-[A-Za-z0-9]+)*)"
                        r"_(?P<contrast>T1w|T2w|FLAIR|PDw|PD)" + _SUFFIX)),
    ("plain", re.compile(r"^(?P<case>.+?)[-_](?P<contrast>t1|t1c|t1ce|t1gd|t2|pd|flair)" + _SUFFIX, re.I)),
)


@dataclass
class Subject:
    """One subject's input files (insertion order = priority for the reference grid), optional output and brain
    mask (``--mask`` for this subject)."""

    name: str
    inputs: dict[str, Path] = field(default_factory=dict)
    output: Path | None = None
    mask: Path | None = None


def read_subject_list(path: str | Path) -> list[Subject]:
    """Subjects from a CSV with a ``subject`` column, one column per contrast (any spelling, e.g. ``t1n``), an
    optional ``out`` column and an optional ``mask`` column (a brain mask per subject); relative paths are
    relative to the CSV's folder, empty cells mean "not given"."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "subject list not found", "check the --batch path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"unreadable CSV ({exc})", "save it as UTF-8 CSV") from None
    columns = list(rows[0].keys()) if rows else []
    subject_column = next((c for c in columns if c and c.strip().lower() in SUBJECT_COLUMNS), None)
    output_column = next((c for c in columns if c and c.strip().lower() in OUTPUT_COLUMNS), None)
    mask_column = next((c for c in columns if c and c.strip().lower() in MASK_COLUMNS), None)
    contrast_columns = {c: canonical_contrast(c) for c in columns if c and canonical_contrast(c)}
    if not rows or subject_column is None or not contrast_columns:
        raise InputError(path, "needs a header with a 'subject' column and one column per contrast",
                         "e.g. subject,t1,t2 then one row per subject")
    subjects: list[Subject] = []
    for line, row in enumerate(rows, start=2):
        name = (row.get(subject_column) or "").strip()
        if not name:
            raise InputError(path, f"line {line}: empty subject name", "fill in the subject column")
        inputs = {contrast: _relative_to(path.parent, row[column].strip())
                  for column, contrast in contrast_columns.items() if (row.get(column) or "").strip()}
        output = (row.get(output_column) or "").strip() if output_column else ""
        mask = (row.get(mask_column) or "").strip() if mask_column else ""
        subjects.append(Subject(name, inputs, _relative_to(path.parent, output) if output else None,
                                _relative_to(path.parent, mask) if mask else None))
    _refuse_duplicates(path, (s.name for s in subjects))
    return subjects


def find_subjects(folder: str | Path) -> list[Subject]:
    """Subjects found under ``folder`` (recursively) from file names in a known layout, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "input folder not found", "check the --input-dir path")
    found: dict[str, Subject] = {}
    masks: list[Path] = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)):
        if MASK_WORD in file.name.lower():
            masks.append(file)
            continue
        match = _match_layout(file.name)
        if match is None:
            continue
        case, contrast = match
        subject = found.setdefault(case, Subject(case))
        if contrast in subject.inputs:
            raise InputError(file, f"second {contrast} file for subject {case} (first: {subject.inputs[contrast]})",
                             "keep one file per contrast and subject")
        subject.inputs[contrast] = file
    if not found:
        raise InputError(folder, "no scans with recognised names found",
                         "name files like <case>-t1n.nii.gz (BraTS), IXI002-Guys-0828-T1.nii.gz, "
                         "sub-01_T1w.nii.gz or use --batch LIST.csv")
    for subject in found.values():  # t1 first: in a folder, the first contrast in CONTRASTS is the reference grid
        subject.inputs = {c: subject.inputs[c] for c in CONTRASTS if c in subject.inputs}
    _assign_masks(masks, found)
    return [found[name] for name in sorted(found)]


def shard_subjects(subjects: list[Subject], index: int, count: int) -> list[Subject]:
    """Part ``index`` (1-based) of ``count`` of a subject list, for cluster array jobs (``--shard I/N``).

    Subjects are dealt round-robin in list order (a folder's subjects are sorted by name, a CSV keeps its rows),
    so the parts are disjoint, together hold every subject exactly once, sizes differ by at most one, and a
    given list always splits the same way on every node.
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count} does not exist")
    return subjects[index - 1::count]


def _assign_masks(masks: list[Path], subjects: dict[str, Subject]) -> None:
    """Each mask file to the subject whose name begins its file name (followed by ``-``, ``_`` or ``.``; the longest
    such name, so ``sub-01_ses-2_...`` goes to that session, not to ``sub-01``); a mask no subject claims is not
    used. Two masks for one subject are refused: which one is the brain cannot be guessed."""
    for file in masks:
        owners = [name for name in subjects if file.name.startswith(name) and file.name[len(name):][:1] in SEPARATORS]
        if not owners:
            continue
        subject = subjects[max(owners, key=len)]
        if subject.mask is not None:
            raise InputError(file, f"second brain mask for subject {subject.name} (first: {subject.mask})",
                             "keep one mask file per subject")
        subject.mask = file


def _match_layout(filename: str) -> tuple[str, str] | None:
    for layout, pattern in LAYOUTS:
        match = pattern.match(filename)
        if match is None:
            continue
        contrast = canonical_contrast(match["contrast"])
        if layout == "bids" and contrast == "t1" and "_ce-" in (match["entities"] or ""):
            contrast = "t1c"
        if contrast:
            return match["case"], contrast
    return None


def _relative_to(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _refuse_duplicates(source: Path, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(source, f"subject {name!r} is listed twice", "give each subject one row")
        seen.add(name)
