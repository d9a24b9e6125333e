"""Where the CUDA sources live and the self-contained text NVRTC compiles; no torch, no CuPy needed.

The kernels are CUDA C files in the repository's ``cuda/`` folder (not strings in Python) so that nvcc, editors
and the CPU test build read them as they are. A wheel installs them as data files under
``<prefix>/share/mrsynth/cuda`` (pyproject's ``[tool.setuptools.data-files]``); ``$MRSYNTH_CUDA_DIR`` overrides both.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

CUDA_DIR_ENV = "MRSYNTH_CUDA_DIR"
SOURCE_NAME = "group_roll.cu"
HEADER_NAME = "group_roll.cuh"
INCLUDE_LINE = f'#include "{HEADER_NAME}"'


def source_candidates() -> list[Path]:
    """Folders that may hold the sources, in the order searched: the override, the checkout, the wheel's data."""
    candidates = []
    if os.environ.get(CUDA_DIR_ENV):
        candidates.append(Path(os.environ[CUDA_DIR_ENV]))
    candidates.append(Path(__file__).resolve().parents[2] / "cuda")  # source checkout or editable install
    for prefix in (sysconfig.get_path("data"), sys.prefix):
        path = Path(prefix) / "share" / "mrsynth" / "cuda"
        if path not in candidates:
            candidates.append(path)
    return candidates


def cuda_source_dir() -> Path | None:
    """The first candidate folder holding both the kernel source and its header, or None."""
    for folder in source_candidates():
        if (folder / SOURCE_NAME).is_file() and (folder / HEADER_NAME).is_file():
            return folder
    return None


def prepared_source(folder: Path | None = None) -> str:
    """group_roll.cu with group_roll.cuh pasted in place of its ``#include``.

    NVRTC compiles a string with no directory to search, and CuPy's kernel cache is keyed on that string: pasting
    the header in makes the source self-contained and makes every header edit a cache miss, as it must be.
    """
    folder = folder or cuda_source_dir()
    if folder is None:
        searched = ", ".join(str(p) for p in source_candidates())
        raise FileNotFoundError(f"{SOURCE_NAME} not found (searched {searched}); set {CUDA_DIR_ENV}")
    source = (folder / SOURCE_NAME).read_text(encoding="utf-8")
    header = (folder / HEADER_NAME).read_text(encoding="utf-8")
    lines = source.splitlines()
    hits = [i for i, line in enumerate(lines) if line.strip() == INCLUDE_LINE]
    if len(hits) != 1:
        raise ValueError(f"{folder / SOURCE_NAME} must include {HEADER_NAME} exactly once, found {len(hits)}")
    lines[hits[0]] = header
    return "\n".join(lines) + "\n"
