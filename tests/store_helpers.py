"""A one-subject (t1, t2, pd) slice store written with the store's own writers, for the scripts' tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrsynth.data.store import STORE_FORMAT, STORE_KIND, write_manifest, write_subject


def write_padded_store(path: Path, slices: np.ndarray, slice_indices: list[int], **entry: Any) -> Path:
    """``slices``: (n, 3, H, W) float32, already padded to the store's slice size; ``entry``: extra subject keys."""
    write_subject(path, "subj", slices)
    write_manifest(path, {
        "kind": STORE_KIND, "format": STORE_FORMAT, "contrasts": ["t1", "t2", "pd"],
        "slice_size": list(slices.shape[2:]),
        "normalization": {"method": "percentile", "percentile": 99.5, "over": "nonzero", "clip": [0.0, 1.0]},
        "split": {"subj": "train"},
        "subjects": {"subj": {"n_slices": len(slice_indices), "slice_indices": list(slice_indices),
                              "normalization": {"t1": {"min": 0.0, "max": 1.0}}, **entry}},
    })
    return path
