"""Write-then-rename: a reader of the target path sees the old file or the complete new one, never half of one.

Every file mrsynth writes for a user (volumes, preview pictures) goes through :func:`atomic_output`, so Ctrl-C, a
crash or a full disk leaves no partial output that a later run (or a pipeline) would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mrsynth.errors import InputError

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst")


def full_suffix(path: str | Path) -> str:
    """The extension that decides the file format, compression included (``.nii.gz``, not ``.gz``)."""
    suffixes = Path(path).suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() in COMPRESSION_SUFFIXES:
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work is done, an output whose folder is missing or that exists without ``overwrite``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(path, f"output folder {path.parent} does not exist", "create it first or choose another --out")
    if path.is_dir():
        raise InputError(path, "output path is a folder", "give a file name such as flair.nii.gz")
    if path.exists() and not overwrite:
        raise InputError(path, "output exists", "pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target folder (same extension, so writers pick the right format); on success
    rename it onto ``path``; on any failure, KeyboardInterrupt included, remove it."""
    path = check_output_path(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{full_suffix(path)}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _apply_umask(tmp)
        if path.exists() and not overwrite:  # appeared while we worked (another process): still never clobber
            raise InputError(path, "output exists", "pass --overwrite to replace it")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _apply_umask(path: Path) -> None:
    """mkstemp creates 0600 files; give the output the permissions an ordinary ``open()`` would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
