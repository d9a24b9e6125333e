"""Per-volume intensity normalisation to [0, 1], shared by preprocessing, training data and inference.

The paper min-max normalises with 0 as minimum and the 99.5th percentile as maximum but does not say over which
voxels; this project takes it over the non-zero (after clipping negatives) voxels, so the constant does not depend
on how much empty field of view a scan has. Inference must apply exactly the convention its checkpoint records,
which is why the spec travels as a dict inside checkpoint metadata and store manifests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mrsynth.errors import InputError

SUPPORTED_METHODS = ("percentile",)


def normalization_constants(volume: np.ndarray, spec: dict[str, Any], source: str | None = None) -> dict[str, float]:
    """The (min, max) pair that maps ``volume`` onto [0, 1] under ``spec``."""
    method = spec.get("method")
    if method not in SUPPORTED_METHODS:
        raise InputError(source, f"unknown normalisation method {method!r}", f"supported: {', '.join(SUPPORTED_METHODS)}")
    if spec.get("over", "nonzero") != "nonzero":
        raise InputError(source, f"unknown normalisation domain {spec.get('over')!r}", "supported: nonzero")
    data = np.asarray(volume, dtype=np.float64)
    positive = data[np.isfinite(data) & (data > 0)]
    if positive.size == 0:
        raise InputError(source, "volume has no positive voxels (all zero, negative or NaN)", "check the input scan")
    high = float(np.percentile(positive, float(spec.get("percentile", 99.5))))
    return {"min": 0.0, "max": high}


def apply_normalization(volume: np.ndarray, constants: dict[str, float]) -> np.ndarray:
    """Map with given constants and clip to [0, 1]; NaNs become 0 (background)."""
    low, high = constants["min"], constants["max"]
    scaled = (np.asarray(volume, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0, out=scaled)


def normalize(
    volume: np.ndarray, spec: dict[str, Any], source: str | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Normalise one volume; returns the [0, 1] float32 array and the constants used (to record or invert)."""
    constants = normalization_constants(volume, spec, source)
    return apply_normalization(volume, constants), constants
