"""``--match-intensity``: a synthesis in a real scan's intensity units instead of the model's normalised [0, 1] scale.

Why histogram matching: a network trained on normalised intensities cannot know a scanner's units, so the output is
mapped onto the intensity distribution of a scan of the target contrast that the user supplies (the same sequence
from their scanner, another subject will do). The mapping is ITK's piecewise-linear histogram matching, the usual
intensity standardisation step of MR pipelines: monotone, so the synthesis' contrast ordering is kept, with the
histograms built from voxels above each image's mean intensity (the head, not the air). Voxels where every input is
zero once normalised (outside the brain of a skull-stripped scan) stay zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

HISTOGRAM_LEVELS = 1024
MATCH_POINTS = 7  # quantile landmarks the piecewise-linear map passes through (ITK's default)


@dataclass(frozen=True)
class IntensityReference:
    """A reference scan read once, so that batch mode can reuse it for every subject, with the name reports use."""

    image: "sitk.Image"
    label: str


def read_intensity_reference(source: Union[str, Path, "sitk.Image"], label: str) -> IntensityReference:
    """The reference scan as float32, read with the same checks as any input (a bad file is an InputError)."""
    import SimpleITK as sitk

    from mrsynth.io import read_volume

    image = read_volume(source) if isinstance(source, (str, Path)) else sitk.Cast(source, sitk.sitkFloat32)
    return IntensityReference(image, label)


def match_intensity(synthesis: "sitk.Image", reference: "sitk.Image", foreground: np.ndarray) -> "sitk.Image":
    """``synthesis`` mapped onto ``reference``'s intensity histogram; outside ``foreground`` (a boolean array in
    ``synthesis``' voxel order) the result is 0. The reference may have any grid: only its histogram is used."""
    import SimpleITK as sitk

    matcher = sitk.HistogramMatchingImageFilter()
    matcher.SetNumberOfHistogramLevels(HISTOGRAM_LEVELS)
    matcher.SetNumberOfMatchPoints(MATCH_POINTS)
    matcher.ThresholdAtMeanIntensityOn()
    matched = sitk.GetArrayFromImage(matcher.Execute(sitk.Cast(synthesis, sitk.sitkFloat32), reference))
    result = sitk.GetImageFromArray(np.where(foreground, matched, np.float32(0)).astype(np.float32))
    result.CopyInformation(synthesis)
    return result
