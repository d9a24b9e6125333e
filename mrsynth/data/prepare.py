"""One subject, raw files -> a normalised (n_slices, n_contrasts, H, W) array plus what the manifest records.

The steps, in order, and why:
1. read every contrast and reorient it to the canonical voxel order (``mrsynth.io.to_canonical``: numpy axis 0
   is axial), so that "axial slice k" means the same anatomy for every dataset;
2. bring every contrast onto the reference contrast's grid: contrasts whose field of view does not overlap the
   reference's are refused; contrasts named in ``register`` (IXI T1, acquired in a separate session) are rigidly
   registered to it; others on a different grid are resampled in physical space (their headers agree);
3. normalise each contrast volume on that grid (``normalize`` with the recorded spec: minimum 0, maximum the
   99.5th percentile of the non-zero voxels, clipped) - before cropping, so the constants are per volume;
4. crop/pad the axial plane to the store's size, centred on the brain's bounding box;
5. keep the axial slices where the brain (non-zero voxels of any contrast) covers at least 1 % of the slice -
   the rule the evaluation protocol uses to pick slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrsynth.data.layouts import SubjectFiles
from mrsynth.data.normalization import normalize
from mrsynth.errors import InputError

MIN_OVERLAP = 0.5  # a contrast must cover at least half of the reference's field of view
MIN_BRAIN_FRACTION = 0.01


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that decides the content of a subject's array (and so must match when a store is resumed)."""

    contrasts: tuple[str, ...]
    reference_order: tuple[str, ...]  # the first of these that is stored is the reference grid
    slice_size: tuple[int, int]
    normalization: dict[str, Any]
    register: tuple[str, ...] = ()
    dtype: str = "float16"
    min_brain_fraction: float = MIN_BRAIN_FRACTION
    registration_seed: int = 0  # fixed, not the split's seed: choosing another split must not move any voxel

    def reference(self) -> str:
        return next((c for c in self.reference_order if c in self.contrasts), self.contrasts[0])


@dataclass
class PreparedSubject:
    array: np.ndarray
    entry: dict[str, Any] = field(default_factory=dict)


class SubjectError(Exception):
    """A subject that cannot be prepared, with the reason the summary shows."""


def prepare_subject(subject: SubjectFiles, options: PrepareOptions, root: Path | None = None) -> PreparedSubject:
    """Run steps 1-5 for one subject; raise :class:`SubjectError` (with a readable reason) if it cannot be used."""
    import SimpleITK as sitk

    from mrsynth.io import overlap_fraction, read_volume, register_rigid, resample_to, same_grid, to_canonical

    images = {}
    for contrast in options.contrasts:
        try:
            images[contrast] = to_canonical(read_volume(subject.files[contrast]))
        except InputError as exc:
            raise SubjectError(f"{contrast}: {Path(subject.files[contrast]).name}: {exc.problem}") from None

    ref_name = options.reference()
    reference = images[ref_name]
    volumes: dict[str, np.ndarray] = {}
    registration: dict[str, Any] = {}
    resampled: list[str] = []
    for contrast, image in images.items():
        if contrast == ref_name:
            volumes[contrast] = sitk.GetArrayFromImage(reference)
            continue
        overlap = overlap_fraction(reference, image)
        if overlap < MIN_OVERLAP:
            raise SubjectError(f"{contrast} does not overlap {ref_name} (covers {overlap:.0%} of its field of view)")
        if contrast in options.register:
            transform = register_rigid(reference, image, seed=options.registration_seed)
            registration[contrast] = _describe_transform(transform)
            image = resample_to(image, reference, transform)
        elif not same_grid(image, reference):
            image = resample_to(image, reference)
            resampled.append(contrast)
        volumes[contrast] = sitk.GetArrayFromImage(image)
    images.clear()  # only the arrays are needed from here on (keeps the peak memory of a worker down)

    constants: dict[str, dict[str, float]] = {}
    normalised = []
    for contrast in options.contrasts:
        try:
            data, constants[contrast] = normalize(volumes[contrast], options.normalization, subject.files[contrast])
        except InputError as exc:
            raise SubjectError(f"{contrast}: {exc.problem}") from None
        normalised.append(data)
    stack = np.stack(normalised, axis=1)  # (z, contrasts, y, x)
    del normalised, volumes

    offsets = _crop_offsets(stack, options.slice_size)
    stack = _crop_pad(stack, offsets, options.slice_size)
    brain = (stack > 0).any(axis=1).mean(axis=(1, 2))
    keep = np.flatnonzero(brain >= options.min_brain_fraction)
    if keep.size == 0:
        raise SubjectError(f"no axial slice has brain on {options.min_brain_fraction:.0%} of its area")

    entry = {
        "files": {c: _display_path(subject.files[c], root) for c in options.contrasts},
        "reference": ref_name,
        "shape": [int(s) for s in sitk.GetArrayViewFromImage(reference).shape],
        "spacing": [float(v) for v in reference.GetSpacing()],
        "origin": [float(v) for v in reference.GetOrigin()],
        "direction": [float(v) for v in reference.GetDirection()],
        "affine": _affine(reference),
        "inplane_offset": [int(o) for o in offsets],
        "n_slices": int(keep.size),
        "slice_indices": [int(k) for k in keep],
        "normalization": constants,
        "registration": registration,
        "resampled": resampled,
    }
    return PreparedSubject(np.ascontiguousarray(stack[keep]).astype(options.dtype, copy=False), entry)


def padded_size(height: int, width: int, multiple: int = 8) -> tuple[int, int]:
    """The in-plane size a ``folder`` store uses by default: the volume's own, padded up to a multiple of 8."""
    return (math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple)


def _crop_offsets(stack: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """Offset (oy, ox) with stored[y, x] = volume[y + oy, x + ox]; negative offsets pad.

    Padding centres the image; cropping centres the window on the bounding box of the non-zero voxels (clamped
    to the image), so an off-centre brain in a large field of view is not cut.
    """
    _, _, height, width = stack.shape
    foreground = (stack > 0).any(axis=(0, 1))
    offsets = []
    for axis, (have, want) in enumerate(zip((height, width), size)):
        if have <= want:
            offsets.append(-((want - have) // 2))
            continue
        occupied = np.flatnonzero(foreground.any(axis=1 - axis))
        centre = (occupied[0] + occupied[-1] + 1) / 2 if occupied.size else have / 2
        offsets.append(int(np.clip(round(centre - want / 2), 0, have - want)))
    return offsets[0], offsets[1]


def _crop_pad(stack: np.ndarray, offsets: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    depth, channels, height, width = stack.shape
    out = np.zeros((depth, channels, *size), dtype=stack.dtype)
    (oy, ox), (want_y, want_x) = offsets, size
    src_y, src_x = slice(max(oy, 0), min(oy + want_y, height)), slice(max(ox, 0), min(ox + want_x, width))
    dst_y = slice(src_y.start - oy, src_y.stop - oy)
    dst_x = slice(src_x.start - ox, src_x.stop - ox)
    out[:, :, dst_y, dst_x] = stack[:, :, src_y, src_x]
    return out


def _affine(image: Any) -> list[list[float]]:
    """4x4 matrix from ITK voxel index (x, y, z) to physical LPS millimetres: direction * spacing, then origin."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    matrix[:3, 3] = image.GetOrigin()
    return [[float(v) for v in row] for row in matrix]


def _describe_transform(transform: Any) -> dict[str, Any]:
    """The registration result in a form that can be rebuilt (``sitk.Euler3DTransform`` parameters)."""
    import SimpleITK as sitk

    while isinstance(transform, sitk.CompositeTransform) and transform.GetNumberOfTransforms() == 1:
        transform = transform.GetNthTransform(0)
    return {
        "type": transform.GetName(),
        "parameters": [float(v) for v in transform.GetParameters()],
        "fixed_parameters": [float(v) for v in transform.GetFixedParameters()],
        "maps": "reference (fixed) points to source (moving) points, LPS mm",
    }


def _display_path(path: Path, root: Path | None) -> str:
    """Paths relative to the dataset root when possible, so a moved dataset keeps a readable manifest."""
    path = Path(path)
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path.resolve())
