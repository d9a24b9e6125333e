"""The brain-mask stage: a user's mask (``--mask``) or one that deepbet computes (``--skull-strip``), on the
reference grid, applied to every aligned input and to the output.

Why: every model is trained on skull-stripped BraTS volumes; a raw head (skull, scalp, neck, eyes) changes both
what the model sees and the percentile that normalises it, and the synthesis loses the target's contrast.

deepbet (MIT, https://github.com/wwu-mmll/deepbet) is an optional dependency, imported only when ``--skull-strip``
is used (``pip install "mrsynth[bet]"``). It loads the TorchScript weights bundled in its own wheel with
``torch.jit.load``: they are part of an installed package and trusted like its code. mrsynth's own checkpoints stay
safetensors-only.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from mrsynth.errors import InputError
from mrsynth.io import overlap_fraction, read_volume, resample_to, same_grid
from mrsynth.io.atomic import full_suffix
from mrsynth.pipeline.align import MIN_OVERLAP

BET_HINT = 'pip install "mrsynth[bet]"'
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def check_mask_options(mask_given: bool, skull_strip: bool) -> None:
    """Before any work: at most one source of brain mask, and deepbet installed for ``--skull-strip``."""
    if not skull_strip:
        return
    if mask_given:
        raise InputError("--mask", "is given together with --skull-strip", "give one of them: your own mask, or "
                                                                            "deepbet's")
    require_bet()


def require_bet() -> None:
    """Refuse ``--skull-strip`` when deepbet is not installed, naming the extra that installs it."""
    try:
        import deepbet  # noqa: F401
    except ImportError:
        raise InputError("--skull-strip", "needs deepbet (the optional brain-extraction extra), which is not "
                                          "installed", BET_HINT) from None


def read_mask(path: str | Path, reference: sitk.Image) -> sitk.Image:
    """A user's brain mask file as uint8 on ``reference``'s grid (:func:`mask_on_grid`).

    Refused besides: anything :func:`mrsynth.io.read_volume` refuses (an all-zero mask included) and a NIfTI
    without world coordinates (qform and sform codes 0: where its voxels lie is unknown).
    """
    path = Path(path)
    image = read_volume(path)
    _check_geometry(path)
    return mask_on_grid(image, reference, str(path))


def mask_on_grid(image: sitk.Image, reference: sitk.Image, label: str) -> sitk.Image:
    """A brain mask (non-zero = brain) as uint8 on ``reference``'s grid.

    A mask on another grid is resampled nearest-neighbour (SimpleITK), so labels stay labels. Refused: a grid
    that covers under 5 % of the reference's field of view, and a mask with no brain voxel on the reference grid.
    """
    if not same_grid(image, reference):
        covered = overlap_fraction(reference, image)
        if covered < MIN_OVERLAP:
            raise InputError(label, f"the mask's grid does not overlap the reference scan ({covered:.0%} of its "
                                    "field of view covered)", "give the mask made from this subject's scan")
        image = resample_to(image, reference, interpolator="nearest")
    mask = sitk.Cast(sitk.NotEqual(image, 0.0), sitk.sitkUInt8)
    mask.CopyInformation(reference)
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise InputError(label, "no brain voxel of the mask lies inside the reference scan's field of view",
                         "give the mask made from this subject's scan")
    return mask


def brain_mask(mask: sitk.Image | Path | None, aligned: Mapping[str, sitk.Image], reference: sitk.Image,
               labels: Mapping[str, str], device: str) -> sitk.Image:
    """The brain mask on the reference grid: the user's (a file or an image, resampled nearest-neighbour) or, with
    ``mask`` None, deepbet's, computed on the T1 as it lies on the reference grid."""
    if mask is None:
        return skull_strip(aligned["t1"], device, labels["t1"])
    if isinstance(mask, Path):
        return read_mask(mask, reference)
    return mask_on_grid(mask, reference, "<in-memory mask>")


def skull_strip(t1: sitk.Image, device: str, label: str) -> sitk.Image:
    """deepbet's brain mask of a T1-weighted image, as uint8 on the image's own grid.

    The image goes to deepbet as a nibabel image written by SimpleITK (so neither header convention is
    re-implemented), and its mask comes back in the same voxel order.
    """
    import nibabel as nib

    extractor = _brain_extraction(no_gpu=not device.startswith("cuda"))
    with tempfile.TemporaryDirectory(prefix="mrsynth-bet-") as folder:
        copy = Path(folder) / "t1.nii"
        sitk.WriteImage(sitk.Cast(t1, sitk.sitkFloat32), str(copy))
        source = nib.load(str(copy))
        try:
            _, mask, _ = extractor.run(nib.Nifti1Image(source.get_fdata(dtype=np.float32), source.affine,
                                                       source.header))
        except AssertionError as exc:  # deepbet's own checks (e.g. no foreground for its bounding box)
            raise InputError(label, f"deepbet found no brain in it ({exc})",
                             "check that it is a T1-weighted head scan, or give your own --mask") from None
    values = np.asarray(mask.dataobj, dtype=np.uint8).transpose(2, 1, 0)  # nibabel (i, j, k) -> SimpleITK (z, y, x)
    result = sitk.GetImageFromArray(np.ascontiguousarray(values))
    result.CopyInformation(t1)
    if not values.any():
        raise InputError(label, "deepbet found no brain in it", "check that it is a T1-weighted head scan, or give "
                                                                 "your own --mask")
    return result


def apply_mask(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """``image`` with every voxel outside ``mask`` set to 0 (both on one grid)."""
    return sitk.Mask(image, mask, outsideValue=0.0)


def _check_geometry(path: Path) -> None:
    if full_suffix(path).lower() not in NIFTI_SUFFIXES:
        return  # MHA, NRRD, DICOM always carry origin, spacing and direction
    import nibabel as nib

    header = nib.load(str(path)).header
    if not int(header["qform_code"]) and not int(header["sform_code"]):
        raise InputError(path, "the mask has no world coordinates (NIfTI qform_code and sform_code are 0), so "
                               "where its voxels lie is unknown", "save it with its scan's header, as HD-BET and "
                                                                  "SynthStrip do")


@functools.lru_cache(maxsize=2)
def _brain_extraction(no_gpu: bool) -> Any:
    """One loaded deepbet model per process and device (batch mode strips subject after subject)."""
    import warnings

    require_bet()
    from deepbet import BrainExtraction

    with warnings.catch_warnings():  # torch's deprecation notice about deepbet's own loader is not the user's to act on
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*")
        return BrainExtraction(no_gpu=no_gpu)
