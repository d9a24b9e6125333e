"""The restore stage: the synthesis from the model's working grid back onto the reference grid and voxel order.

Why its own stage: the output must carry the reference's grid and header exactly (``write_volume`` checks it), and
interpolating back from a working grid blurs the brain's edge into the background, where no input has signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from mrsynth.io import from_canonical, resample_to
from mrsynth.pipeline.brainmask import apply_mask


def restore(synthesis: np.ndarray, working: sitk.Image, canonical: sitk.Image, reference: sitk.Image, *,
            foreground: np.ndarray, resampled: bool, brain: sitk.Image | None) -> sitk.Image:
    """The synthesis on the reference grid (:func:`to_reference_grid`); after a working grid, 0 outside the inputs'
    ``foreground`` again (:func:`zero_outside`); with a brain mask, 0 outside the brain."""
    image = to_reference_grid(synthesis, working, canonical, reference)
    if resampled:
        image = zero_outside(image, foreground)
    if brain is not None:
        image = apply_mask(image, brain)
    return image


def input_foreground(aligned: Mapping[str, sitk.Image], inputs: Sequence[str]) -> np.ndarray:
    """(Z, Y, X) True where any of the ``inputs`` has signal on the reference grid: where the synthesis may be
    non-zero, and the voxels ``--match-intensity`` maps."""
    return np.any([sitk.GetArrayViewFromImage(aligned[c]) > 0 for c in inputs], axis=0)


def to_reference_grid(synthesis: np.ndarray, working: sitk.Image, canonical: sitk.Image,
                      reference: sitk.Image) -> sitk.Image:
    """(Z, Y, X) synthesis on ``working`` -> the canonical reference grid (linear, when they differ) -> the
    reference's own voxel order and geometry."""
    image = sitk.GetImageFromArray(synthesis)
    image.CopyInformation(working)
    if image.GetSize() != canonical.GetSize() or image.GetSpacing() != canonical.GetSpacing():
        image = resample_to(image, canonical)
    else:
        image.CopyInformation(canonical)
    return from_canonical(image, reference)


def zero_outside(image: sitk.Image, foreground: np.ndarray) -> sitk.Image:
    """``image`` set to 0 where ``foreground`` (a (Z, Y, X) array on its grid) is False."""
    values = np.where(foreground, sitk.GetArrayViewFromImage(image), np.float32(0))
    cleaned = sitk.GetImageFromArray(values.astype(np.float32, copy=False))
    cleaned.CopyInformation(image)
    return cleaned
