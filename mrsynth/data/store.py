"""The slice store: normalised axial slices of every subject, readable fast by many workers with little memory.

Layout::

    STORE/manifest.json            settings, split, per-subject geometry and normalisation constants
    STORE/subjects/<subject>.npy   float16/float32 array (n_slices, n_contrasts, H, W) in [0, 1]

Why one ``.npy`` per subject: ``np.load(mmap_mode="r")`` maps it without reading, so a DataLoader worker touches
only the pages of the slices it samples, and a subject is written atomically (temporary file + ``os.replace``) so
an interrupted run never leaves half a subject. A subject is *finished* when its ``.npy`` and its manifest entry
both exist; the manifest is rewritten atomically after each finished subject.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mrsynth.errors import InputError

STORE_KIND = "mrsynth-slice-store"
STORE_FORMAT = 1
MANIFEST_NAME = "manifest.json"
SUBJECTS_DIR = "subjects"


class SliceStore:
    """Read access to a finished (or partially finished) store; only finished subjects are visible."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.contrasts: list[str] = list(self.manifest["contrasts"])
        height, width = self.manifest["slice_size"]
        self.slice_size: tuple[int, int] = (int(height), int(width))

    def subjects(self, split: str | None = None) -> list[str]:
        """Finished subjects, sorted; ``split`` in {"train", "val", "test"} keeps one part of the split."""
        if split is not None and split not in ("train", "val", "test"):
            raise InputError("split", f"unknown split {split!r}", "use train, val or test")
        done = self.manifest["subjects"]
        assigned = self.manifest.get("split", {})
        return sorted(s for s in done if split is None or assigned.get(s) == split)

    def split_of(self, subject: str) -> str | None:
        return self.manifest.get("split", {}).get(subject)

    def slices(self, subject: str) -> np.ndarray:
        """The subject's slices, memory-mapped read-only: (n_slices, n_contrasts, H, W)."""
        self._entry(subject)
        path = subject_file(self.path, subject)
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot read slice array ({exc})", "re-run mrsynth preprocess") from None

    def slice_indices(self, subject: str) -> list[int]:
        """Original axial index (in the canonical reference grid) of each stored slice."""
        return list(self._entry(subject)["slice_indices"])

    def channel(self, name: str) -> int:
        if name not in self.contrasts:
            raise InputError(self.path, f"store has no {name!r} contrast", f"it has {', '.join(self.contrasts)}")
        return self.contrasts.index(name)

    def _entry(self, subject: str) -> dict[str, Any]:
        try:
            return self.manifest["subjects"][subject]
        except KeyError:
            raise InputError(self.path, f"subject {subject!r} is not in the store") from None


def subject_file(store: str | Path, subject: str) -> Path:
    return Path(store) / SUBJECTS_DIR / f"{subject}.npy"


def read_manifest(store: str | Path) -> dict[str, Any]:
    """The manifest of ``store``; :class:`InputError` if ``store`` is not an mrsynth slice store."""
    path = Path(store) / MANIFEST_NAME
    hint = "create one with mrsynth preprocess"
    if not path.is_file():
        raise InputError(store, "not a slice store (no manifest.json)", hint)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable manifest ({exc})", hint) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != STORE_KIND:
        raise InputError(path, "not an mrsynth slice store manifest", hint)
    if manifest.get("format") != STORE_FORMAT:
        raise InputError(path, f"store format {manifest.get('format')!r} is not supported", "upgrade mrsynth or re-run preprocess")
    return manifest


def write_manifest(store: str | Path, manifest: dict[str, Any]) -> None:
    """Atomically replace the manifest; subjects are written sorted so equal content gives equal bytes."""
    from mrsynth.io import atomic_output

    manifest = {**manifest, "subjects": dict(sorted(manifest.get("subjects", {}).items()))}
    with atomic_output(Path(store) / MANIFEST_NAME, overwrite=True) as tmp:
        tmp.write_text(_format_manifest(manifest), encoding="utf-8")


def _format_manifest(manifest: dict[str, Any]) -> str:
    """JSON with one top-level key per line and one subject per line: diffable and greppable, yet compact
    (a fully indented manifest puts each of ~150 slice indices per subject on its own line)."""
    lines = []
    for key, value in manifest.items():
        if isinstance(value, dict) and value and key in ("split", "subjects", "skipped", "failed"):
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_subject(store: str | Path, subject: str, array: np.ndarray) -> Path:
    """Atomically write one subject's slice array (the .npy appears complete or not at all)."""
    from mrsynth.io import atomic_output

    path = subject_file(store, subject)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    return path


def remove_temporaries(store: str | Path) -> None:
    """Delete the temporary files (``.<name>.*.part*``) that a killed run may have left."""
    for folder in (Path(store), Path(store) / SUBJECTS_DIR):
        if folder.is_dir():
            for path in folder.glob(".*.part*"):
                path.unlink(missing_ok=True)
