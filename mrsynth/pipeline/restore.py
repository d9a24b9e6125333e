"""The restore stage: the synthesis from the model's working grid back onto the reference grid and voxel order.

Why its own stage: the output must carry the reference's grid and header exactly (``write_volume`` checks it), and
interpolating back from a working grid blurs the brain's edge into the background, where no input has signal.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from mrsynth.io import from_canonical, resample_to


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
