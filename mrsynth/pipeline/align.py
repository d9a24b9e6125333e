"""The alignment stage: every input on the reference grid, trusting the headers or after rigid registration.

Why before everything else: masking, bias correction and normalisation must see the voxels the model will see, and
a brain mask made on (or brought onto) the reference grid then fits every input.
"""

from __future__ import annotations

from collections.abc import Mapping

import SimpleITK as sitk

from mrsynth.errors import InputError
from mrsynth.io import overlap_fraction, register_rigid, resample_to, same_grid

MIN_OVERLAP = 0.05  # below this fraction of the reference's field of view, two scans cannot be the same head
WARN_OVERLAP = 0.8


def align(volumes: Mapping[str, sitk.Image], labels: Mapping[str, str], reference_name: str, register: bool,
          others: list[str]) -> tuple[dict[str, sitk.Image], list[str]]:
    """The reference as it is and the ``others`` resampled onto it (linear; rigidly registered to it first with
    ``register``), plus warnings for partial overlap. Fields of view that do not overlap are refused."""
    reference = volumes[reference_name]
    aligned, warnings = {reference_name: reference}, []
    for contrast in others:
        image, label = volumes[contrast], labels[contrast]
        if register or not same_grid(image, reference):
            transform = None
            if register:
                transform = register_rigid(reference, image)
            else:
                covered = overlap_fraction(reference, image)
                if covered < MIN_OVERLAP:
                    raise InputError(label, f"its field of view does not overlap the reference "
                                            f"{labels[reference_name]} ({covered:.0%} covered)",
                                     "give scans of the same subject and session, or try --register")
                if covered < WARN_OVERLAP:
                    warnings.append(f"{label}: covers only {covered:.0%} of the reference's field of view; the "
                                    "rest is synthesized from zeros")
            image = resample_to(image, reference, transform)
        aligned[contrast] = image
    return aligned, warnings
