"""The resampling stage: axial slices at the model's training voxel size in-plane, and back afterwards.

Why: the network is 2-D and convolutional, so its filters have a size in voxels; a 0.6 mm scan shows it anatomy
1.7 times larger than the 1 mm training slices, a 1.2 mm scan smaller. On the canonical grid (after
:func:`mrsynth.io.to_canonical`, so axial means anatomy) the working grid keeps the field of view, the direction and
the slices (z), and takes the checkpoint's ``voxel_size_mm`` along x and y. A sagittal or coronal acquisition has
its thick axis in-plane once the slices are axial; it is resampled to the training voxel size like any other
in-plane axis (interpolated, so no detail is gained, but the anatomy has its true shape). The slice spacing (z) is
kept: each axial slice is synthesized on its own, so thick axial slices only cost through-plane detail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from mrsynth.io import resample_to, to_canonical

IN_PLANE_TOLERANCE = 0.05  # within 5 % of the training voxel size, resampling gains nothing and costs a blur


def working_grid(canonical: sitk.Image, voxel_size_mm: Sequence[float] | None) -> sitk.Image | None:
    """An empty image on the working grid for a canonical reference image, or None when its in-plane spacing is
    already the training voxel size (or the checkpoint records none)."""
    if not voxel_size_mm:
        return None
    spacing = np.asarray(canonical.GetSpacing(), dtype=float)
    size = np.asarray(canonical.GetSize(), dtype=float)
    trained = np.asarray(voxel_size_mm, dtype=float)[:2]
    if np.all(np.abs(spacing[:2] - trained) <= IN_PLANE_TOLERANCE * trained):
        return None
    new_spacing = np.array([trained[0], trained[1], spacing[2]])
    new_size = np.maximum(1, np.round(size * spacing / new_spacing)).astype(int)
    direction = np.asarray(canonical.GetDirection(), dtype=float).reshape(3, 3)
    centre = np.asarray(canonical.GetOrigin()) + direction @ ((size - 1) * spacing / 2)
    grid = sitk.Image([int(n) for n in new_size], sitk.sitkUInt8)
    grid.SetSpacing(new_spacing.tolist())
    grid.SetDirection(canonical.GetDirection())
    grid.SetOrigin((centre - direction @ ((new_size - 1) * new_spacing / 2)).tolist())
    return grid



def to_working_grid(aligned: Mapping[str, sitk.Image], inputs: Sequence[str],
                    voxel_size_mm: Sequence[float] | None) -> tuple[sitk.Image, dict[str, sitk.Image], bool]:
    """(the reference grid in canonical voxel order, the ``inputs`` in canonical order on the working grid,
    whether that meant resampling). Canonical first (:func:`mrsynth.io.to_canonical`), so that the working grid's
    in-plane axes are anatomical ones."""
    canonical_reference = to_canonical(aligned[inputs[0]])
    grid = working_grid(canonical_reference, voxel_size_mm)
    canonical = {c: to_canonical(aligned[c]) for c in inputs}
    if grid is not None:
        canonical = {c: resample_to(image, grid) for c, image in canonical.items()}
    return canonical_reference, canonical, grid is not None
