"""Small (t1, t2, pd) slice stores written with the store's own writers, for the scripts' tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrsynth.data.store import STORE_FORMAT, STORE_KIND, write_manifest, write_subject


def write_store(path: Path, subjects: dict[str, tuple[np.ndarray, str]], **entry: Any) -> Path:
    """``subjects``: name -> ((n, 3, H, W) float32 slices, split), slices numbered from 0 unless ``entry``
    gives ``slice_indices``; ``entry``: extra keys of every subject's manifest entry."""
    entries = {}
    for name, (slices, _) in subjects.items():
        write_subject(path, name, slices)
        entries[name] = {"n_slices": len(slices), "slice_indices": list(range(len(slices))),
                         "normalization": {"t1": {"min": 0.0, "max": 1.0}}, **entry}
    first = next(iter(subjects.values()))[0]
    write_manifest(path, {
        "kind": STORE_KIND, "format": STORE_FORMAT, "contrasts": ["t1", "t2", "pd"],
        "slice_size": list(first.shape[2:]),
        "normalization": {"method": "percentile", "percentile": 99.5, "over": "nonzero", "clip": [0.0, 1.0]},
        "split": {name: split for name, (_, split) in subjects.items()},
        "subjects": entries,
    })
    return path


def write_padded_store(path: Path, slices: np.ndarray, slice_indices: list[int], **entry: Any) -> Path:
    """One training subject ``subj``; ``slices``: (n, 3, H, W) float32, already padded to the store's slice size."""
    return write_store(path, {"subj": (slices, "train")}, slice_indices=list(slice_indices), **entry)
