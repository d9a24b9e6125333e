"""Bringing several scans onto one grid: resampling with a known transform, rigid registration, overlap checks.

All of it is SimpleITK's: ``sitk.Resample`` for interpolation and ``ImageRegistrationMethod`` (Mattes mutual
information, which works across contrasts such as T1 against T2) for registration.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
    "lanczos": sitk.sitkLanczosWindowedSinc,
}


def resample_to(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform | None = None,
    interpolator: str = "linear",
    default: float = 0.0,
) -> sitk.Image:
    """``moving`` on ``reference``'s grid (float32); ``transform`` maps reference points to moving points
    (identity: the headers already agree on physical space), voxels outside ``moving`` get ``default``."""
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"unknown interpolator {interpolator!r}; choose one of {', '.join(INTERPOLATORS)}")
    return sitk.Resample(
        moving, reference, transform or sitk.Transform(), INTERPOLATORS[interpolator], float(default), sitk.sitkFloat32
    )


def register_rigid(fixed: sitk.Image, moving: sitk.Image, seed: int = 0) -> sitk.Transform:
    """A rigid (Euler3D) transform from ``fixed`` to ``moving`` physical points, for :func:`resample_to`.

    Mattes mutual information on a seeded random 2 % sample, three resolution levels (4, 2, 1 with smoothing),
    initialised by matching the intensity centres of mass (moments), so scans whose headers disagree by a large
    shift still converge. ITK reads a sampling seed of 0 as "seed from the wall clock", so ``seed`` n is passed as
    n + 1; and ITK runs single-threaded meanwhile, because multi-threaded sums differ in their last bits between
    runs. The same seed therefore gives the same transform, bit for bit.
    """
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.02, int(seed) + 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=200, gradientMagnitudeTolerance=1e-8
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    method.SetNumberOfThreads(1)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return method.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical box (LPS mm) around the image's voxels, their outer faces included."""
    size = image.GetSize()
    corners = np.array(
        [
            image.TransformContinuousIndexToPhysicalPoint([c - 0.5 for c in corner])
            for corner in itertools.product(*[(0, s) for s in size])
        ]
    )
    return corners.min(axis=0), corners.max(axis=0)


def overlap_fraction(a: sitk.Image, b: sitk.Image) -> float:
    """Fraction of ``a``'s physical bounding box that ``b``'s bounding box covers (0: disjoint fields of view)."""
    low_a, high_a = physical_bounds(a)
    low_b, high_b = physical_bounds(b)
    common = np.clip(np.minimum(high_a, high_b) - np.maximum(low_a, low_b), 0.0, None)
    return float(np.prod(common) / np.prod(high_a - low_a))
