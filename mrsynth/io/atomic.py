"""Write-then-rename: a reader of the target path sees the old file or the complete new one, never half of one.

Every file mrsynth writes for a user (volumes, preview pictures) goes through :func:`atomic_output`, so Ctrl-C, a
crash or a full disk leaves no partial output that a later run (or a pipeline) would mistake for a finished one.

Only a process killed outright (SIGKILL, the OOM killer, a power cut) leaves its hidden temporary file behind. Its
name says which process wrote it (``.<name>.<host>.<pid>.<random>.part<ext>``), so the next write of the same output
deletes the ones whose writer is gone, and never one that a live process on this host, or any process on another
host sharing the folder, is still writing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mrsynth.errors import InputError

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst")
PROCESS_STARTED = time.time()  # no temporary file of this process is older than its first import of this module


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
    rename it onto ``path``; on any failure, KeyboardInterrupt and SIGTERM included, remove it and re-raise."""
    path = check_output_path(path, overwrite)
    remove_stale_parts(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.",
                                    suffix=f".part{full_suffix(path)}", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        yield tmp
        _apply_umask(tmp)
        if path.exists() and not overwrite:  # appeared while we worked (another process): still never clobber
            raise InputError(path, "output exists", "pass --overwrite to replace it")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_parts(path: str | Path) -> None:
    """Delete the temporary files of ``path`` that a killed writer on this host left."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+"
                         rf"\.part{re.escape(full_suffix(path))}")
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.part*"):
        match = pattern.fullmatch(candidate.name)
        if match is None or match["host"] != _host():
            continue
        with contextlib.suppress(FileNotFoundError):  # another run's clean-up got there first
            if _writer_is_gone(int(match["pid"]), candidate):
                candidate.unlink()


def _host() -> str:
    """This machine's short name as it appears in temporary file names (no dots: they separate the fields)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _writer_is_gone(pid: int, part: Path) -> bool:
    """Whether the process that created ``part`` has exited. Our own pid with a file older than this process is a
    recycled pid (containers restart at low pids); another live pid is assumed to be the writer."""
    if pid == os.getpid():
        return part.stat().st_mtime < PROCESS_STARTED
    if os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows: keep the file
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def _apply_umask(path: Path) -> None:
    """mkstemp creates 0600 files; give the output the permissions an ordinary ``open()`` would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
