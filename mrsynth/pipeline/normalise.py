"""The normalisation stage: each input mapped to [0, 1] as the checkpoint's metadata says.

Why last before slicing: ``mrsynth preprocess`` normalises training volumes that are skull-stripped and on a 1 mm
grid, so the percentile must be taken over the same kind of voxels: after masking, bias correction and the
working grid (:mod:`mrsynth.pipeline.spacing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import SimpleITK as sitk

from mrsynth.data.normalization import normalize


def normalise(images: Mapping[str, sitk.Image], spec: dict[str, Any],
              labels: Mapping[str, str]) -> dict[str, sitk.Image]:
    """Every image normalised with ``spec`` (checkpoint metadata ``normalization``), on its own grid."""
    normalised = {}
    for contrast, image in images.items():
        values, _ = normalize(sitk.GetArrayViewFromImage(image), spec, source=labels[contrast])
        normalised[contrast] = sitk.GetImageFromArray(values)
        normalised[contrast].CopyInformation(image)
    return normalised
