"""The input checks: mix-ups that give a plausible but wrong synthesis, and scans that differ from the model's
training data.

Why separate from reading: these compare the scans with each other and with the checkpoint's metadata
(``voxel_size_mm``, ``skull_stripped``), and except for one identical pair they only warn: the user may know
better, but should be told.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mrsynth.errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk

VOXEL_SIZE_TOLERANCE = 0.3  # relative difference to the training voxel size that earns a warning
STRIPPED_MAX_LITRES = 2.2  # a skull-stripped adult brain (CSF included) stays below this much non-zero tissue
HEAD_MIN_LITRES = 3.0  # a head with skull and scalp has at least this much
STRIPPED_MIN_BACKGROUND = 0.3  # skull stripping leaves exact zeros around the brain


def identical_inputs(volumes: Mapping[str, "sitk.Image"], labels: Mapping[str, str]) -> None:
    """Refuse two inputs with identical voxels (one file copied under two names): the synthesis would look
    plausible and be wrong."""
    import SimpleITK as sitk

    arrays = {c: sitk.GetArrayViewFromImage(image) for c, image in volumes.items()}
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if arrays[a].shape == arrays[b].shape and np.array_equal(arrays[a], arrays[b]):
                raise InputError(labels[b], f"has exactly the voxels of {labels[a]} (--{a} and --{b})",
                                 "give each contrast its own scan")


def swapped_t1_t2(volumes: Mapping[str, "sitk.Image"], labels: Mapping[str, str]) -> list[str]:
    """A warning when a T1 and a T2 of brain-only (skull-stripped or masked) scans look swapped.

    The test uses what distinguishes the two weightings in brain tissue, normalised by each scan's 99th
    percentile: T1 is bright with a dark CSF tail (median of 0.64-0.82, negative skew on the 17 BraTS training
    subjects), T2 dark with a bright CSF tail (median 0.27-0.50, skew +0.6 to +2.5). Both statistics must point
    the other way before anything is said. Scans with skull and scalp do not follow these figures (two raw
    clinical T1s had skew +0.9 and +2.1; inside deepbet's mask the same T1s have -1.1 and -1.2), so the caller
    runs it on stripped scans only: after the brain mask, or on the inputs of a model trained on stripped scans.
    """
    import SimpleITK as sitk

    if not {"t1", "t2"} <= set(volumes):
        return []
    t1, t2 = (_tissue_statistics(sitk.GetArrayViewFromImage(volumes[c])) for c in ("t1", "t2"))
    if t1[0] < t2[0] and t1[1] > t2[1]:
        return [f"{labels['t1']} (--t1) looks T2-weighted and {labels['t2']} (--t2) T1-weighted (median "
                f"{t1[0]:.2f} vs {t2[0]:.2f}, skew {t1[1]:+.2f} vs {t2[1]:+.2f}); are --t1 and --t2 swapped?"]
    return []


def training_mismatch(image: "sitk.Image", metadata: Mapping[str, Any], label: str,
                      check_skull: bool = True) -> list[str]:
    """Warnings (never refusals) for a scan that clearly differs from the model's training data.

    Voxel size: more than 30 % away from the checkpoint's ``voxel_size_mm`` along any anatomical axis. Skull: a
    skull-stripped adult brain, CSF included, holds under 2.2 L of non-zero voxels, a head with skull and scalp
    over 3 L (noisy background counts as non-zero, and is itself a sign of an unstripped scan); stripped scans
    also have at least 30 % exact-zero background. Between those bounds nothing is said. ``check_skull=False``
    (a brain mask is applied) leaves the skull test out.
    """
    import SimpleITK as sitk

    from mrsynth.io import to_canonical

    warnings = []
    trained = metadata.get("voxel_size_mm")
    if trained:
        spacing = np.asarray(to_canonical(image).GetSpacing(), dtype=float)
        expected = np.asarray(trained, dtype=float)
        if np.any(np.abs(spacing - expected) > VOXEL_SIZE_TOLERANCE * expected):
            warnings.append(f"{label}: voxel size {_mm(spacing)} differs from the model's training voxel size "
                            f"{_mm(expected)}; results may degrade")
    stripped = metadata.get("skull_stripped") if check_skull else None
    if stripped is not None:
        values = sitk.GetArrayViewFromImage(image)
        litres = float(np.count_nonzero(values > 0)) * math.prod(image.GetSpacing()) / 1e6
        background = float(np.mean(values == 0))
        if stripped and litres > HEAD_MIN_LITRES:
            warnings.append(f"{label}: looks like it still has the skull ({litres:.1f} L of non-zero voxels) but the "
                            "model was trained on skull-stripped scans; pass --skull-strip (deepbet) or --mask FILE "
                            "(e.g. from HD-BET or SynthStrip)")
        elif not stripped and litres < STRIPPED_MAX_LITRES and background > STRIPPED_MIN_BACKGROUND:
            warnings.append(f"{label}: looks skull-stripped ({litres:.1f} L of non-zero voxels) but the model was "
                            "trained on scans with the skull")
    return warnings


def _tissue_statistics(values: np.ndarray) -> tuple[float, float]:
    """(median, skewness) of the brain voxels (above 10 % of the 99th percentile), scaled by that percentile."""
    positive = values[values > 0]
    if positive.size < 100:
        return 0.0, 0.0
    p99 = float(np.percentile(positive, 99))
    tissue = np.clip(positive[positive > 0.1 * p99] / p99, 0.0, 1.5)
    centred = tissue - tissue.mean()
    spread = float(np.sqrt(np.mean(centred ** 2))) or 1.0
    return float(np.median(tissue)), float(np.mean(centred ** 3) / spread ** 3)


def _mm(values: Any) -> str:
    return "x".join(f"{v:g}" for v in np.round(np.asarray(values, dtype=float), 2)) + " mm"
