"""Evaluation of a prediction volume against a ground-truth volume, for outputs made by any tool.

Both volumes must share one grid (shape and affine): resampling a prediction would change its metrics, so a
mismatch is an error, not something fixed silently. The axial axis is the array axis that the affine maps
closest to the superior-inferior direction (``nibabel.aff2axcodes``), whatever the file's orientation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mrsynth.errors import InputError
from mrsynth.evaluation.engine import SliceResults
from mrsynth.metrics import brain_slices, slice_metrics

NORMALIZE_CHOICES = ("none", "truth", "both")
RANGE_TOLERANCE = 1e-3


def parse_slice_range(text: str | None) -> tuple[int | None, int | None]:
    """``START:STOP`` of axial indices (either end may be empty: ``45:`` is z >= 45), STOP excluded."""
    if not text:
        return None, None
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return (int(start) if start.strip() else None), (int(stop) if stop.strip() else None)
    except ValueError:
        raise InputError("--slices", f"{text!r} is not START:STOP", "e.g. 45: for axial slices 45 and above") from None


def read_axial(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """A 3-D volume as an (n_axial, H, W) float64 stack, with its affine and the axial axis it came from."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.get_fdata(dtype=np.float64))
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise InputError(path, f"cannot read image ({type(exc).__name__}: {exc})", "give a NIfTI file") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"image is {data.ndim}-D, not 3-D", "give one 3-D volume")
    if not np.isfinite(data).any():
        raise InputError(path, "image has no finite value", "check the file")
    codes = nib.aff2axcodes(image.affine)
    axis = next((i for i, c in enumerate(codes) if c in ("S", "I")), 2)
    return np.moveaxis(np.nan_to_num(data, nan=0.0), axis, 0), image.affine, axis


def _normalized(stack: np.ndarray, path: Path) -> np.ndarray:
    from mrsynth.checkpoint import default_normalization
    from mrsynth.data.normalization import normalize

    return normalize(stack, default_normalization(), str(path))[0].astype(np.float64)


def _check_range(stack: np.ndarray, path: Path) -> None:
    low, high = float(stack.min()), float(stack.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise InputError(path, f"values span [{low:.4g}, {high:.4g}], not the normalised [0, 1]",
                         "pass --normalize truth (or both) to apply the 99.5th-percentile normalisation")


def evaluate_pair(
    pred: str | Path,
    truth: str | Path,
    mask: str | Path | None = None,
    inputs: Sequence[str | Path] = (),
    normalize: str = "none",
    slices: tuple[int | None, int | None] = (None, None),
    label: str | None = None,
) -> tuple[SliceResults, dict[str, Any]]:
    """Per-slice metrics of ``pred`` against ``truth`` under the protocol, and what was evaluated.

    Slices kept: axial index in ``slices`` and brain >= 1 % of the slice, the brain being the non-zero voxels of
    ``mask``, else of any of ``inputs``, else of ``truth`` (after normalisation: its positive voxels).
    """
    if normalize not in NORMALIZE_CHOICES:
        raise InputError("--normalize", f"unknown choice {normalize!r}", f"use {', '.join(NORMALIZE_CHOICES)}")
    pred, truth = Path(pred), Path(truth)
    p, p_affine, p_axis = read_axial(pred)
    t, t_affine, t_axis = read_axial(truth)
    if p.shape != t.shape or p_axis != t_axis or not np.allclose(p_affine, t_affine, atol=1e-3):
        raise InputError(pred, f"grid {p.shape} differs from the ground truth's {t.shape} (shape or affine)",
                         "resample the prediction onto the ground-truth grid first")
    if normalize in ("truth", "both"):
        t = _normalized(t, truth)
    if normalize == "both":
        p = _normalized(p, pred)
    _check_range(t, truth)
    _check_range(p, pred)
    p, t = np.clip(p, 0.0, 1.0), np.clip(t, 0.0, 1.0)
    brain_sources = [Path(mask)] if mask else [Path(x) for x in inputs]
    brain = []
    for source in brain_sources:
        stack, affine, axis = read_axial(source)
        if stack.shape != t.shape or axis != t_axis or not np.allclose(affine, t_affine, atol=1e-3):
            raise InputError(source, "grid differs from the ground truth's", "give a mask/input on the same grid")
        brain.append(np.clip(stack, 0.0, None))  # negatives are background after normalisation
    brain_stack = np.stack(brain, axis=1) if brain else t
    start, stop = slices
    index = np.arange(t.shape[0])
    chosen = (index >= (start if start is not None else 0)) & (index < (stop if stop is not None else t.shape[0]))
    chosen &= brain_slices(brain_stack)
    if not chosen.any():
        raise InputError(truth, "no axial slice with >= 1 % brain in the chosen range", "check --slices and --mask")
    name = label or pred.name
    results = SliceResults(name, "", 0.0)
    results.extend(truth.name, index[chosen], slice_metrics(p[chosen], t[chosen]))
    info = {"pred": str(pred), "truth": str(truth), "axial_axis": int(t_axis), "normalize": normalize,
            "brain_from": [str(s) for s in brain_sources] or [str(truth)], "slices": [start, stop]}
    return results, info
