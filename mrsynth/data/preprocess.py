"""Raw dataset -> slice store, resumable and parallel: the library behind ``mrsynth preprocess``.

Why this shape: the split is decided from file names before any volume is read (so a subject that fails to load
does not reshuffle the others); workers write each subject's array atomically and the main process alone
rewrites the manifest after each one (so a kill at any moment leaves finished subjects finished and nothing
half-written); a re-run checks that its settings match the store's and processes only unfinished subjects, and
since every step is deterministic the resumed store is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import signal
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from mrsynth import __version__
from mrsynth.data.layouts import Discovery, SubjectFiles, discover
from mrsynth.data.prepare import PrepareOptions, SubjectError, padded_size, prepare_subject
from mrsynth.data.splits import assign_split, read_split_file
from mrsynth.data.store import (
    MANIFEST_NAME,
    STORE_FORMAT,
    STORE_KIND,
    SUBJECTS_DIR,
    read_manifest,
    remove_temporaries,
    subject_file,
    write_manifest,
    write_subject,
)
from mrsynth.errors import InputError

DATASET_SLICE_SIZE = {"ixi": (256, 256), "brats": (240, 240)}
# IXI T2 and PD share the dual-echo grid, T1 is a separate acquisition: register it to them.
REFERENCE_ORDER = {"ixi": ("t2", "pd", "t1"), "brats": ("t1", "t1c", "t2", "flair"), "folder": ()}
REGISTER = {"ixi": ("t1",)}
SKULL_STRIPPED = {"ixi": False, "brats": True}  # folder: unknown (None)
# Settings that decide the stored bytes: a store can only be resumed with the same ones.
SETTINGS_KEYS = ("mrsynth_version", "dataset", "root", "roots", "contrasts", "slice_size", "dtype", "normalization",
                 "slice_rule", "reference_order", "register", "split")


@dataclass
class SubjectOutcome:
    """What happened to one subject in this run: processed, done (finished earlier), skipped or failed."""

    subject: str
    status: str
    split: Optional[str] = None
    n_slices: Optional[int] = None
    reason: Optional[str] = None


@dataclass
class PreprocessResult:
    store: Path
    outcomes: list[SubjectOutcome] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # complete subjects the split did not ask for
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[SubjectOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


ProgressCallback = Callable[[SubjectOutcome], None]


def preprocess(
    dataset: str,
    root: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    contrasts: Optional[list[str]] = None,
    split: str = "0.8,0.1,0.1",
    split_file: Optional[str | Path] = None,
    seed: int = 0,
    workers: int = 1,
    size: Optional[tuple[int, int]] = None,
    dtype: str = "float16",
    overwrite: bool = False,
    command: Optional[str] = None,
    on_start: Optional[Callable[[int, int], None]] = None,
    on_subject: Optional[ProgressCallback] = None,
) -> PreprocessResult:
    """Build or resume the slice store ``out`` from ``dataset`` at ``root`` (the CSV file for ``folder``).

    ``root`` may list several dataset folders (BraTS 2018 and 2023 downloads, say): their subjects form one store
    and one split.

    ``on_start(total, already_done)`` is called once the work list is known, ``on_subject`` after each subject
    (processed, failed, or finished in an earlier run); both are for progress display.
    """
    from mrsynth.checkpoint import default_normalization

    if dtype not in ("float16", "float32"):
        raise InputError("--dtype", f"unsupported dtype {dtype!r}", "use float16 or float32")
    if workers < 1:
        raise InputError("--workers", f"must be at least 1, got {workers}")
    found = discover(dataset, root, contrasts)
    out = Path(out)
    result = PreprocessResult(store=out)

    assigned, note = _split(found, split, split_file, seed, result)
    if note:
        result.notes.append(note)
    result.unused = [s for s in found.subject_ids() if s not in assigned]
    todo = [s for s in found.subjects if s.subject in assigned]
    if not todo:
        raise InputError(found.root, "no complete subject to process",
                         "; ".join(f"{k}: {v}" for k, v in list(found.skipped.items())[:3]) or "check the split")

    if size is None:
        size = DATASET_SLICE_SIZE.get(dataset) or _own_size(todo, found.contrasts)
    options = PrepareOptions(
        contrasts=tuple(found.contrasts),
        reference_order=REFERENCE_ORDER.get(dataset, ()),
        slice_size=(int(size[0]), int(size[1])),
        normalization=default_normalization(),
        register=REGISTER.get(dataset, ()),
        dtype=dtype,
    )
    manifest = _new_manifest(found, options, assigned, split, split_file, seed, command)
    manifest = _open_store(out, manifest, overwrite)

    for subject, reason in found.skipped.items():
        result.outcomes.append(SubjectOutcome(subject, "skipped", reason=reason))
    finished = set(manifest["subjects"])
    pending = [s for s in todo if s.subject not in finished]
    if on_start:
        on_start(len(todo), len(todo) - len(pending))
    for s in todo:
        if s.subject in finished:
            outcome = SubjectOutcome(s.subject, "done", assigned[s.subject], manifest["subjects"][s.subject]["n_slices"])
            result.outcomes.append(outcome)
            if on_subject:
                on_subject(outcome)

    failures: dict[str, str] = {}
    root_dir = found.root.parent if dataset == "folder" else found.root
    for subject, entry, reason in _run(pending, options, root_dir, out, workers):
        if entry is not None:
            manifest["subjects"][subject] = entry
            outcome = SubjectOutcome(subject, "processed", assigned[subject], entry["n_slices"])
        else:
            failures[subject] = reason or "unknown error"
            outcome = SubjectOutcome(subject, "failed", assigned[subject], reason=reason)
        manifest["failed"] = dict(sorted(failures.items()))
        write_manifest(out, manifest)
        result.outcomes.append(outcome)
        if on_subject:
            on_subject(outcome)
    result.outcomes.sort(key=lambda o: o.subject)
    return result


def _split(found: Discovery, text: str, split_file: Optional[str | Path], seed: int,
           result: PreprocessResult) -> tuple[dict[str, str], Optional[str]]:
    """subject -> split for the complete subjects (a split file may name subjects that were skipped or absent)."""
    complete = found.subject_ids()
    if split_file is None:
        return assign_split(complete, text, seed)
    wanted = read_split_file(split_file)
    absent = sorted(s for s in wanted if s not in complete and s not in found.skipped)
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        result.notes.append(f"{len(absent)} subject(s) of {split_file} not found under the root: {shown}")
    return {s: wanted[s] for s in complete if s in wanted}, None


def _own_size(subjects: list[SubjectFiles], contrasts: list[str]) -> tuple[int, int]:
    """A folder store's default slice size: the first readable subject's canonical in-plane size, padded to a
    multiple of 8 (an unreadable subject is left for the main loop to report)."""
    from mrsynth.io import read_volume, to_canonical

    for subject in subjects:
        try:
            image = to_canonical(read_volume(subject.files[contrasts[0]]))
        except InputError:
            continue
        width, height, _ = image.GetSize()
        return padded_size(height, width)
    raise InputError(subjects[0].files[contrasts[0]], f"no subject has a readable {contrasts[0]} volume",
                     "check the paths in the CSV")


def _new_manifest(found: Discovery, options: PrepareOptions, assigned: dict[str, str], split: str,
                  split_file: Optional[str | Path], seed: int, command: Optional[str]) -> dict[str, Any]:
    from mrsynth.io import CANONICAL

    return {
        "kind": STORE_KIND,
        "format": STORE_FORMAT,
        "mrsynth_version": __version__,
        "command": command,
        "dataset": found.dataset,
        "root": str(Path(found.root).resolve()),
        "roots": [str(Path(r).resolve()) for r in found.roots],
        "contrasts": list(options.contrasts),
        "slice_size": list(options.slice_size),
        "dtype": options.dtype,
        "orientation": f"{CANONICAL}; array axis 0 is axial (inferior to superior), slices are (y, x)",
        "normalization": dict(options.normalization),
        "normalization_applied_to": "each contrast volume on the subject's reference grid (after registration or "
                                    "resampling, before the in-plane crop/pad); percentile over its voxels > 0",
        "skull_stripped": SKULL_STRIPPED.get(found.dataset),
        "slice_rule": {"brain": "voxels > 0 in any stored contrast", "min_fraction": options.min_brain_fraction},
        "reference_order": list(options.reference_order),
        "register": list(options.register),
        "split_method": {"split_file": str(Path(split_file).resolve())} if split_file else {"split": split, "seed": seed},
        "split": assigned,
        "skipped": dict(found.skipped),
        "failed": {},
        "subjects": {},
    }


def _open_store(out: Path, manifest: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Create ``out`` or resume it; refuse a store made with other settings (or a non-store folder)."""
    if (out / MANIFEST_NAME).exists():
        existing = read_manifest(out)
        differing = [k for k in SETTINGS_KEYS if existing.get(k) != manifest[k]]
        if differing and not overwrite:
            raise InputError(out, f"store was made with different settings ({', '.join(differing)})",
                             "use the same options to resume, another --out, or --overwrite to rebuild it")
        if overwrite:
            shutil.rmtree(out / SUBJECTS_DIR, ignore_errors=True)
            (out / MANIFEST_NAME).unlink()
        else:
            manifest["subjects"] = {s: e for s, e in existing.get("subjects", {}).items()
                                    if s in manifest["split"] and subject_file(out, s).is_file()}
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "exists and is not a slice store", "choose a new or empty folder for --out")
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)
    write_manifest(out, manifest)
    return manifest


def _run(pending: list[SubjectFiles], options: PrepareOptions, root: Path, out: Path, workers: int):
    """Yield (subject, manifest entry or None, failure reason or None) as subjects finish."""
    tasks = [(s, options, root, out) for s in pending]
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield _process(task)
        return
    context = multiprocessing.get_context("spawn")  # no fork: SimpleITK's thread pool does not survive fork
    with _sigint_ignored():  # workers inherit the ignored Ctrl-C from birth: it is the main process's to handle
        pool = context.Pool(min(workers, len(tasks)), initializer=_init_worker)
    try:
        yield from pool.imap_unordered(_process, tasks)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while starting processes (an ignored signal stays ignored across exec, so a Ctrl-C during
    worker start-up cannot print a traceback from a half-started worker)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _init_worker() -> None:
    """Workers leave Ctrl-C to the main process (which stops them) and use one ITK thread each (N workers, N cores)."""
    import SimpleITK as sitk

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _process(task: tuple[SubjectFiles, PrepareOptions, Path, Path]) -> tuple[str, Optional[dict], Optional[str]]:
    subject, options, root, out = task
    try:
        prepared = prepare_subject(subject, options, root)
    except SubjectError as exc:
        return subject.subject, None, str(exc)
    except Exception as exc:  # a broken file must not stop a 500-subject batch; report it by name instead
        return subject.subject, None, f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    write_subject(out, subject.subject, prepared.array)
    return subject.subject, prepared.entry, None


def outcome_record(outcome: SubjectOutcome) -> dict[str, Any]:
    """A subject's outcome as one JSON-able dict (for ``--json``)."""
    return {k: v for k, v in asdict(outcome).items() if v is not None}
