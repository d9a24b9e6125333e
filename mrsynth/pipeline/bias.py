"""The bias-field stage (``--n4``): SimpleITK's N4 correction, per input, before normalisation.

Why: a receive-coil bias field makes the same tissue brighter on one side of the head than on the other; the model
was trained on BraTS volumes that were bias-corrected, and a percentile normalisation cannot undo a smooth
multiplicative field. N4 is estimated on a copy shrunk to about 4 mm voxels (seconds instead of minutes) and the
field, a smooth B-spline, is evaluated on the full grid and divided out.
"""

from __future__ import annotations

import SimpleITK as sitk

SHRINK_TO_MM = 4.0
ITERATIONS = (50, 50, 30, 20)  # per fitting level, SimpleITK's example values


def n4(image: sitk.Image, mask: sitk.Image | None = None) -> sitk.Image:
    """``image`` divided by its N4 bias field, estimated inside ``mask`` (the brain) or, without one, inside an
    Otsu threshold of the image (the head); voxels <= 0 never take part, and zeros stay zeros."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    positive = sitk.Cast(sitk.Greater(image, 0.0), sitk.sitkUInt8)
    region = sitk.OtsuThreshold(image, 0, 1, 200) if mask is None else mask
    region = sitk.And(sitk.Cast(region, sitk.sitkUInt8), positive)
    factors = [max(1, int(round(SHRINK_TO_MM / s))) for s in image.GetSpacing()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(ITERATIONS))
    corrector.Execute(sitk.Shrink(image, factors), sitk.Shrink(region, factors))
    field = sitk.Exp(corrector.GetLogBiasFieldAsImage(image))
    return sitk.Cast(sitk.Divide(image, sitk.Cast(field, sitk.sitkFloat32)), sitk.sitkFloat32)
