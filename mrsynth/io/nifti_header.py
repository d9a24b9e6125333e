"""NIfTI header problems that readers paper over: a zero voxel size, and a qform and sform that disagree.

Why: nibabel "fixes" a zero ``pixdim`` to 1 mm with a log line and ITK prints C++ warnings about "unexpected
scales in sform", and both then carry on with a geometry nobody wrote. When qform and sform disagree, ITK picks
one by its own rules (the sform unless it is not orthonormal), nibabel another (the sform whenever its code is
set), so the same file lands in different places in different tools. mrsynth refuses the undefined geometry and
says which transform it used for the ambiguous one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrsynth.errors import InputError

QFORM_SFORM_TOLERANCE_MM = 0.01  # corners closer than this: the two transforms agree


def check_voxel_size(path: Path) -> None:
    """Refuse a NIfTI whose header, as written, has a zero, negative or non-finite voxel size."""
    import nibabel as nib

    with nib.openers.ImageOpener(str(path)) as stream:
        header = nib.Nifti1Image.header_class.from_fileobj(stream, check=False)
    zooms = np.asarray(header["pixdim"][1:4], dtype=float)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise InputError(path, f"voxel size {zooms.tolist()} in the header (pixdim) is not positive: the scan's "
                               "geometry is undefined", "fix the header, e.g. with nibabel's set_zooms or fslchpixdim")


def qform_sform_note(image: Any, itk_origin: tuple[float, ...], itk_direction: tuple[float, ...]) -> str | None:
    """When qform and sform are both set and map the volume's corners more than 0.01 mm apart, a warning that
    says by how much and which of them SimpleITK (and so mrsynth) used; None when they agree or one is unset."""
    header = image.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if qform is None or sform is None or not qcode or not scode:
        return None
    corners = _corners(image.shape[:3])
    apart = float(np.max(np.linalg.norm(corners @ qform.T - corners @ sform.T, axis=1)))
    if apart <= QFORM_SFORM_TOLERANCE_MM:
        return None
    used = min((("sform", sform), ("qform", qform)), key=lambda item: _distance_to_itk(item[1], itk_origin,
                                                                                         itk_direction))[0]
    which = ("the sform is used, as nibabel and FSL do" if used == "sform" else
             "SimpleITK, and so mrsynth, uses the qform, where nibabel and FSL would use the sform")
    return f"qform and sform in the header disagree (by up to {apart:.2f} mm at the volume's corners): {which}"


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    """The 8 corner voxels in homogeneous voxel coordinates, (8, 4)."""
    axes = [(0, max(n - 1, 0)) for n in shape]
    return np.array([[i, j, k, 1.0] for i in axes[0] for j in axes[1] for k in axes[2]])


def _distance_to_itk(affine: np.ndarray, origin: tuple[float, ...], direction: tuple[float, ...]) -> float:
    """How far an affine (RAS) is from ITK's geometry (LPS): origin distance plus direction difference."""
    flip = np.diag([-1.0, -1.0, 1.0])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    ras_direction = affine[:3, :3] / np.where(spacing > 0, spacing, 1.0)
    lps_origin = flip @ affine[:3, 3]
    lps_direction = flip @ ras_direction
    return float(np.linalg.norm(lps_origin - np.asarray(origin))
                 + np.abs(lps_direction - np.asarray(direction).reshape(3, 3)).sum())
