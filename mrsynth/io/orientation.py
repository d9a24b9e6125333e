"""One fixed voxel order for slicing, so that "axial slice" means anatomy, not the order a scanner wrote to disk.

The canonical order is SimpleITK's identity direction, ``LPS``: voxel index x grows to the patient's left, y to
posterior, z to superior. In ``sitk.GetArrayFromImage`` (z, y, x) order, numpy axis 0 is then the axial axis from
inferior to superior, and each axial slice is shown in radiological convention (anterior up, patient right on the
left). BraTS/SRI24 volumes are already stored this way, so for them the reorientation is a no-op.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

CANONICAL = "LPS"


def orientation_of(image: sitk.Image) -> str:
    """Three-letter DICOM-convention orientation (closest axis-aligned one for oblique scans)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_canonical(image: sitk.Image) -> sitk.Image:
    """Permute and flip voxels (no interpolation) so that the image is stored in :data:`CANONICAL` order."""
    if orientation_of(image) == CANONICAL:
        return image
    return sitk.DICOMOrient(image, CANONICAL)


def from_canonical(image: sitk.Image, like: sitk.Image) -> sitk.Image:
    """Undo :func:`to_canonical`: ``image`` back in the voxel order of ``like`` (which it came from), with
    ``like``'s geometry copied exactly so that a round trip is bit-identical in header as well as in data."""
    restored = sitk.DICOMOrient(image, orientation_of(like)) if orientation_of(image) != orientation_of(like) else image
    if restored.GetSize() != like.GetSize() or not np.allclose(
        restored.GetOrigin(), like.GetOrigin(), atol=1e-3 * min(like.GetSpacing())
    ):
        raise ValueError("image is not a reoriented copy of `like`; resample it instead")
    restored = sitk.Image(restored)  # own copy: CopyInformation must not touch the caller's image
    restored.CopyInformation(like)
    return restored
