"""What an output path must satisfy before any work is done.

Why a separate check: a synthesis takes seconds to minutes, and an output that cannot be written (a missing
folder, a read-only one, a format no writer knows, a preview that would land on the volume, an output that would
replace one of the inputs) used to fail only at the end, after the work, or worse, succeed and destroy an input.
Every such case is refused here, up front, with one line that names the path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mrsynth.errors import InputError
from mrsynth.io.atomic import check_output_path, full_suffix

VOLUME_OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
PREVIEW_SUFFIXES = (".png",)


def check_volume_output(path: str | Path, overwrite: bool = False) -> Path:
    """A volume output: a file name (not a folder) with a format mrsynth writes, in an existing, writable folder."""
    return _check(path, overwrite, VOLUME_OUTPUT_SUFFIXES, "flair.nii.gz")


def check_preview_output(path: str | Path, overwrite: bool = False) -> Path:
    """A preview picture: a ``.png`` file name in an existing, writable folder."""
    return _check(path, overwrite, PREVIEW_SUFFIXES, "preview.png")


def check_distinct(scans: Mapping[str, Path], outputs: Mapping[str, Path | None],
                   also_read: Mapping[str, Path] | None = None) -> None:
    """No two scans and no two outputs may be one file, and no output may be a file that is read.

    Two contrasts from one file (``--t1 a --t2 a``) give a plausible-looking but wrong synthesis; ``--overwrite``
    replaces old outputs, never the scans read or the file just written (``--out`` equal to ``--t1`` once replaced
    the T1 with the synthesis). ``also_read`` (a brain mask) may be one of the scans (a skull-stripped T1 is a valid
    mask) but not an output. Spellings of one file (relative, absolute, through a symlink) count as one.
    """
    seen: dict[str, str] = {}

    def claim(label: str, path: Path) -> None:
        key = _identity(path)
        if key in seen:
            raise InputError(path, f"{label} is the same file as {seen[key]}", f"give {label} a path of its own")
        seen[key] = label

    for label, path in scans.items():
        claim(label, path)
    for label, path in (also_read or {}).items():
        seen.setdefault(_identity(path), label)
    for label, output in outputs.items():
        if output is not None:
            claim(label, output)


def _check(path: str | Path, overwrite: bool, suffixes: tuple[str, ...], example: str) -> Path:
    text = os.fspath(path)
    if text.endswith(("/", os.sep)):
        raise InputError(text, "is a folder name, not an output file", f"give a file name, e.g. {text}{example}")
    path = check_output_path(path, overwrite)
    suffix = full_suffix(path).lower()
    if not suffix:
        raise InputError(path, "has no extension, so the output format is unknown", f"end it in {', '.join(suffixes)}")
    if suffix not in suffixes:
        raise InputError(path, f"'{suffix}' is not an output format mrsynth writes", f"use {', '.join(suffixes)}")
    _check_writable(path)
    return path


def _check_writable(path: Path) -> None:
    """Create and drop a scratch file in the output folder: the only test that sees read-only mounts, ACLs and
    quotas alike (``os.access`` answers yes to root even on a read-only file system)."""
    try:
        with tempfile.TemporaryFile(dir=path.parent, prefix=".mrsynth-probe-"):
            pass
    except OSError as exc:
        raise InputError(path, f"cannot write in {path.parent} ({exc.strerror or exc})",
                         "choose another output folder") from None


def _identity(path: Path) -> str:
    """Two spellings of one file (relative, absolute, through a symlink) compare equal."""
    return os.path.realpath(os.fspath(path))
