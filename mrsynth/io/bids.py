"""BIDS datasets in, BIDS derivatives out: which anatomical scans a (subject, session) has, and where and how a
synthesized contrast is written so that BIDS tools (validator, pybids, fMRIPrep-style pipelines) accept it.

Deliberately no pybids: reading ``sub-*/[ses-*/]anat/`` file names needs a dozen lines of entity parsing, not a
heavy dependency. Derivatives follow the spec's entity order (sub, ses, ce, ..., desc), reference their inputs as
BIDS URIs (``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``) and name the raw dataset ``raw`` in ``DatasetLinks``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mrsynth import __version__
from mrsynth.contrasts import CONTRASTS, canonical_contrast
from mrsynth.errors import InputError
from mrsynth.io.atomic import atomic_output
from mrsynth.io.subjects import Subject

BIDS_VERSION = "1.10.0"
RAW_LINK = "raw"  # the DatasetLinks name that Sources URIs use for the input dataset
SUFFIX_CONTRAST = {"T1w": "t1", "T2w": "t2", "FLAIR": "flair", "PDw": "pd", "PD": "pd"}  # PD: deprecated spelling
TARGET_NAMING = {"t1": ("", "T1w"), "t1c": ("_ce-gadolinium", "T1w"), "t2": ("", "T2w"), "pd": ("", "PDw"),
                 "flair": ("", "FLAIR")}  # contrast -> (entities between sub/ses and desc, suffix)
MASK_SUFFIX, MASK_DESC = "mask", "brain"  # sub-X[_ses-Y]_desc-brain_mask.nii.gz: the subject's brain mask
_LABEL = r"[A-Za-z0-9]+"
_FILENAME = re.compile(rf"^(?P<entities>sub-{_LABEL}(?:_[a-z]+-{_LABEL})*)_(?P<suffix>{_LABEL})\.nii(?:\.gz)?$")


@dataclass
class BidsSubject(Subject):
    """A :class:`Subject` (``name`` is ``sub-01`` or ``sub-01_ses-02``) plus the BIDS identity the outputs need;
    ``source_entities`` maps each contrast to the entities of the chosen file, ``warnings`` says what was skipped."""

    subject: str = ""
    session: str | None = None
    source_entities: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def find_bids_subjects(root: str | Path) -> list[BidsSubject]:
    """One BidsSubject per (subject, session) with at least one T1w/ce-T1w/T2w/PDw/FLAIR NIfTI in its ``anat``
    folder (and its ``desc-brain_mask``, when there is one, as the subject's mask), sorted by subject then session. Only ``sub-*/[ses-*/]anat/`` is read, so ``derivatives/``,
    ``sourcedata/`` and dot-folders are never mistaken for inputs. A file whose sub/ses entities contradict its
    folders raises InputError: it is a curation mistake, and guessing which is right could mix two people's scans."""
    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise InputError(root, "not a BIDS dataset (no dataset_description.json)",
                         "give the dataset's top folder, or use --input-dir for other layouts")
    found: list[BidsSubject] = []
    for label, subject_dir in _labelled_folders(root, "sub"):
        folders = [(None, subject_dir / "anat")] + [(s, d / "anat") for s, d in _labelled_folders(subject_dir, "ses")]
        for session, anat in folders:
            if anat.is_dir() and (subject := _read_anat(anat, label, session)).inputs:
                found.append(subject)
    if not found:
        raise InputError(root, "no T1w, T2w, PDw or FLAIR NIfTI scans under sub-*/[ses-*/]anat/",
                         "check that this is the raw dataset, not a derivatives folder")
    return sorted(found, key=lambda s: (s.subject, s.session or ""))


def derivative_output(deriv_root: str | Path, subject: BidsSubject, target: str) -> Path:
    """Where the synthesized ``target`` goes: ``sub-X/[ses-Y/]anat/sub-X[_ses-Y][_ce-gadolinium]_desc-synth_<T1w|
    T2w|PDw|FLAIR>.nii.gz``. Only sub, ses, ce and desc: one synthetic image per contrast and session, whatever
    acq/run the inputs had. Pure path arithmetic; the caller creates the folder (and checks for an existing file)."""
    contrast = canonical_contrast(target)
    if contrast not in TARGET_NAMING:
        raise InputError("--target", f"unknown contrast {target!r}", f"use one of {', '.join(CONTRASTS)}")
    entities, suffix = TARGET_NAMING[contrast]
    prefix = f"sub-{subject.subject}" + (f"_ses-{subject.session}" if subject.session else "")
    folder = Path(deriv_root) / f"sub-{subject.subject}" / (f"ses-{subject.session}" if subject.session else "")
    return folder / "anat" / f"{prefix}{entities}_desc-synth_{suffix}.nii.gz"


def write_sidecar(output: str | Path, subject: BidsSubject, dataset_root: str | Path, model: str, sha256: str,
                  scenario: str) -> Path:
    """Write (atomically, replacing an old one: it describes the output beside it) the JSON sidecar of ``output``.
    ``Sources`` lists, as ``bids:raw:`` URIs, the subject's files for the inputs of ``scenario`` (``t1,t2->flair``),
    and the brain mask when one was used, so a reader can tell exactly which files fed the model."""
    output = Path(output)
    if not output.name.endswith((".nii.gz", ".nii")):
        raise InputError(output, "a BIDS derivative must be .nii.gz or .nii", "use derivative_output() for the name")
    inputs_text, arrow, target = scenario.partition("->")
    contrasts = [canonical_contrast(c) or c.strip() for c in inputs_text.split(",")] if arrow else []
    missing = [c for c in contrasts if c not in subject.inputs]
    if not contrasts or missing:
        raise InputError(subject.name, f"scenario {scenario!r} needs {', '.join(missing or ['inputs->target'])}",
                         "choose a model whose inputs this subject has")
    sources = [_bids_uri(subject.inputs[c], Path(dataset_root)) for c in contrasts]
    if subject.mask is not None:
        sources.append(_bids_uri(subject.mask, Path(dataset_root)))
    sidecar = output.with_name(output.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    _write_json(sidecar, {
        "Description": f"{target.strip()} synthesized by mrsynth {__version__} from {', '.join(contrasts)} "
                       f"with model {model}; not an acquired scan",
        "Sources": sources,
        "mrsynth": {"Version": __version__, "Model": model, "SHA256": sha256, "Scenario": scenario},
    }, overwrite=True)
    return sidecar


def write_dataset_description(deriv_root: str | Path, dataset_root: str | Path) -> Path:
    """Create ``deriv_root`` and its ``dataset_description.json`` unless one exists. An existing one is kept (a
    rerun or a second model adds to the same derivative dataset) if it is a derivative whose ``raw`` link is
    ``dataset_root``; anything else (the raw dataset itself, another dataset's derivatives) raises InputError
    instead of writing sidecars whose Sources would point nowhere."""
    deriv_root, dataset_root = Path(deriv_root), Path(dataset_root)
    path = deriv_root / "dataset_description.json"
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(path, f"unreadable ({exc})", "fix or remove it, or choose another --out-dir") from None
        if not isinstance(existing, dict) or existing.get("DatasetType") != "derivative":
            raise InputError(path, "exists and is not a derivative dataset (DatasetType is not 'derivative')",
                             "choose an empty --out-dir, e.g. DATASET/derivatives/mrsynth")
        links = existing.get("DatasetLinks")
        link = links.get(RAW_LINK) if isinstance(links, dict) else None
        linked = _resolve_link(deriv_root, link) if isinstance(link, str) else None
        if not isinstance(link, str) or (linked is not None and linked.resolve() != dataset_root.resolve()):
            raise InputError(path, f"is a derivative of another dataset (DatasetLinks {RAW_LINK!r}: {link!r})",
                             "choose another --out-dir for this dataset")
        return path
    deriv_root.mkdir(parents=True, exist_ok=True)
    try:
        link = Path(os.path.relpath(os.path.abspath(dataset_root), os.path.abspath(deriv_root))).as_posix() + "/"
    except ValueError:  # another drive on Windows: no relative path exists
        link = Path(os.path.abspath(dataset_root)).as_uri() + "/"
    _write_json(path, {
        "Name": "mrsynth synthesized contrasts",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mrsynth", "Version": __version__,
                         "Description": "MRI contrast synthesis with AGI-Net"}],
        "SourceDatasets": [{"URL": f"bids:{RAW_LINK}:"}],  # a BIDS URI (the schema wants a URI) via DatasetLinks
        "DatasetLinks": {RAW_LINK: link},
    }, overwrite=False)
    return path


def _labelled_folders(parent: Path, key: str) -> list[tuple[str, Path]]:
    """(label, folder) for the ``<key>-<label>`` folders of ``parent``, sorted; other names are not BIDS folders."""
    return [(p.name[len(key) + 1:], p) for p in sorted(parent.glob(f"{key}-*"))
            if p.is_dir() and re.fullmatch(f"{key}-{_LABEL}", p.name)]


def _read_anat(anat: Path, subject: str, session: str | None) -> BidsSubject:
    """The scans of one anat folder and its brain mask (``desc-brain_mask`` without a ``space`` entity: a mask in a
    template space is not on the subject's grid); several candidates for a contrast or mask -> the plainest one,
    with a warning."""
    name = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    result = BidsSubject(name, subject=subject, session=session)
    candidates: dict[str, list[tuple[Path, dict[str, str]]]] = {}
    masks: list[tuple[Path, dict[str, str]]] = []
    # Broken symlinks are kept: in a DataLad dataset they are scans not fetched yet, and reading them later gives a
    # clearer error than a subject silently missing its T1.
    for file in sorted(p for p in anat.iterdir() if not p.name.startswith(".") and (p.is_file() or p.is_symlink())):
        match = _FILENAME.match(file.name)
        if match is None or match["suffix"] not in (*SUFFIX_CONTRAST, MASK_SUFFIX):
            continue
        pairs = [item.split("-", 1) for item in match["entities"].split("_")]
        entities = dict(pairs)
        if len(entities) != len(pairs):
            raise InputError(file, "an entity appears twice in the file name", "rename it following BIDS")
        if entities["sub"] != subject or entities.get("ses") != session:
            where = f"sub-{subject}" + (f"/ses-{session}" if session else " (no session folder)")
            raise InputError(file, f"file name entities do not match its folder {where}",
                             "rename the file or move it to the right folder")
        if match["suffix"] == MASK_SUFFIX:
            if entities.get("desc") == MASK_DESC and "space" not in entities:
                masks.append((file, entities))
            continue
        contrast = SUFFIX_CONTRAST[match["suffix"]]
        if "ce" in entities:
            if contrast != "t1":
                result.warnings.append(f"{name}: skipped {file.name} (post-contrast {match['suffix']} is no "
                                       "mrsynth contrast)")
                continue
            contrast = "t1c"
        candidates.setdefault(contrast, []).append((file, entities))
    for contrast in CONTRASTS:
        if not (options := sorted(candidates.get(contrast, []), key=_plainness)):
            continue
        (file, entities), rest = options[0], options[1:]
        result.inputs[contrast], result.source_entities[contrast] = file, entities
        if rest:
            result.warnings.append(f"{name}: {len(options)} {contrast} scans, using {file.name} "
                                   f"(ignored: {', '.join(f.name for f, _ in rest)})")
    if masks:  # several: the plainest, as for the scans
        (chosen, _), *rest = sorted(masks, key=_plainness)
        result.mask = chosen
        if rest:
            result.warnings.append(f"{name}: {len(masks)} brain masks, using {chosen.name} "
                                   f"(ignored: {', '.join(f.name for f, _ in rest)})")
    return result


def _plainness(candidate: tuple[Path, dict[str, str]]) -> tuple[int, int, int, str]:
    """Sort key: fewest extra entities (acq-, rec-, echo-...) first, then no run, then the lowest run, then name."""
    file, entities = candidate
    run = entities.get("run")
    extra = len(set(entities) - {"sub", "ses", "run", "ce"})
    run_index = 0 if run is None else int(run) if run.isdigit() else 10**9  # labels are ASCII: isdigit is safe
    return extra, run is not None, run_index, file.name


def _bids_uri(file: Path, dataset_root: Path) -> str:
    # abspath, not resolve(): DataLad/git-annex scans are symlinks into .git/annex, the URI must name the BIDS path.
    try:
        relative = Path(os.path.relpath(os.path.abspath(file), os.path.abspath(dataset_root)))
    except ValueError:  # another drive on Windows
        relative = Path("..")
    if relative.parts[:1] == ("..",):
        raise InputError(file, f"is not inside the BIDS dataset {dataset_root}", "pass the dataset it came from")
    return f"bids:{RAW_LINK}:{relative.as_posix()}"


def _resolve_link(deriv_root: Path, link: str) -> Path | None:
    """A DatasetLinks value as a local folder: ``file:`` URIs and scheme-less paths (relative to the derivative
    root, as the spec says); None for other schemes (doi:, https:), which cannot be checked here."""
    parsed = urlparse(link)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return deriv_root / link if not parsed.scheme or len(parsed.scheme) == 1 else None  # "C:" is a drive


def _write_json(path: Path, data: dict[str, Any], overwrite: bool) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
