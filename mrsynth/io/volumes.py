"""Reading and writing 3-D volumes: SimpleITK for the image model, nibabel to verify and to keep NIfTI headers.

Why both libraries: SimpleITK reads every common medical format into one physical-space image model (origin,
spacing, direction in LPS) that resampling and registration need, but it silently zero-fills truncated NIfTI files
and rewrites NIfTI headers its own way. nibabel reads the NIfTI family strictly (a short file is an error) and can
write a new image with a reference's exact header, so the output keeps the reference's qform/sform and codes.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from mrsynth.errors import InputError, MrsynthWarning
from mrsynth.io.atomic import atomic_output, full_suffix
from mrsynth.io.nifti_header import check_voxel_size, qform_sform_note

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIBABEL_SUFFIXES = (*NIFTI_SUFFIXES, ".hdr", ".img", ".img.gz", ".mgh", ".mgz", ".mnc", ".par", ".rec")
COMPRESSIBLE_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
FORMATS_HINT = "use NIfTI (.nii/.nii.gz), MHA/MHD, NRRD, MGH/MGZ, MINC or a DICOM folder"
GRID_TOLERANCE = 1e-4  # relative to the voxel size: grids closer than this are the same grid


def read_volume(path: str | Path) -> sitk.Image:
    """Read one 3-D scalar volume as float32, or raise :class:`InputError` naming the file and the problem.

    Refused: a missing or empty file, a truncated or corrupt one, a file that is no image, 2-D images (a single
    slice included), 4-D series with more than one volume (a singleton 4th axis is squeezed), vector images,
    all-NaN, all-zero and constant volumes, and NIfTI headers with a zero voxel size. Non-finite voxels of an
    otherwise valid volume become 0 (background), because resampling and percentile normalisation would spread or
    propagate them; that, and a qform that disagrees with the sform, is reported as a :class:`MrsynthWarning`.
    ITK's own console warnings are silenced while reading: what they say is either refused or warned about here.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    with _quiet_itk():
        if path.is_dir():
            image = _read_dicom_folder(path)
        else:
            if path.stat().st_size == 0:
                raise InputError(path, "file is empty", "copy or export the scan again")
            header_image = _verify_complete(path)
            image = _read_file(path)
            if header_image is not None and _is_nifti(path):
                note = qform_sform_note(header_image, image.GetOrigin(), image.GetDirection())
                if note:
                    warnings.warn(f"{path}: {note}", MrsynthWarning, stacklevel=2)
    image = _as_scalar_3d(image, path)
    return _checked_values(sitk.Cast(image, sitk.sitkFloat32), path)


def write_volume(
    image: sitk.Image, path: str | Path, reference_path: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Write ``image`` as float32, atomically (temporary file in the target folder, then ``os.replace``).

    With a NIfTI ``reference_path`` and a NIfTI output, the file is written through nibabel with the reference's
    header: shape, affine, qform/sform and their codes, pixdims and units are kept, only the data type (float32),
    scaling and display window change. ``image`` must then lie on the reference's grid.
    """
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        if reference_path is not None and _is_nifti(reference_path) and _is_nifti(path):
            _write_with_nifti_header(image, tmp, Path(reference_path))
        else:
            compress = full_suffix(path).lower() in COMPRESSIBLE_SUFFIXES
            sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(tmp), compress)
    return path


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GRID_TOLERANCE) -> bool:
    """Whether two images share size, spacing, origin and direction (so no resampling is needed)."""
    if a.GetSize() != b.GetSize():
        return False
    spacing = np.asarray(a.GetSpacing())
    return bool(
        np.allclose(spacing, b.GetSpacing(), rtol=tolerance, atol=0)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=tolerance * spacing.min())
        and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=tolerance)
    )


def _is_nifti(path: str | Path) -> bool:
    return full_suffix(path).lower() in NIFTI_SUFFIXES


def _sitk_message(exc: Exception) -> str:
    """SimpleITK errors carry C++ source paths; keep only the sentence meant for people."""
    text = str(exc)
    match = re.search(r"ERROR:\s*(.+)", text, flags=re.S)
    return " ".join((match.group(1) if match else text).split())[:200]


def _verify_complete(path: Path) -> Any:
    """Read NIfTI-family files fully with nibabel, which rejects truncated or corrupt data that SimpleITK accepts;
    returns the nibabel image (None for other formats) so that its header can be checked against ITK's reading.

    The NaN check happens here too: ITK's NIfTI reader turns NaN voxels into 0 and returns garbage for an
    all-NaN file, so only nibabel's copy of the data can tell that a volume holds nothing but NaN.
    """
    if not path.name.lower().endswith(NIBABEL_SUFFIXES):
        return None
    import nibabel as nib
    from nibabel.imageglobals import LoggingOutputSuppressor

    try:
        if _is_nifti(path):
            check_voxel_size(path)
        with LoggingOutputSuppressor():  # header fixes nibabel logs are refused or warned about by mrsynth itself
            image = nib.load(str(path))
            data = np.asanyarray(image.dataobj)
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many types (EOFError, ImageFileError, OSError, ValueError...)
        reason = " ".join(str(exc).split())[:160]
        raise InputError(path, f"corrupt, truncated or not an image ({type(exc).__name__}: {reason})",
                         "copy or export the scan again") from None
    if data.dtype.kind in "fc":
        finite = np.isfinite(data)
        if not finite.any():
            raise InputError(path, "all voxels are NaN or infinite", "check the scan or the tool that wrote it")
        if not finite.all():  # ITK reads them as 0 without a word: say so here, where they can still be counted
            warnings.warn(f"{path}: {np.count_nonzero(~finite)} NaN or infinite voxels are treated as background "
                          "(0)", MrsynthWarning, stacklevel=3)
    return image


def _read_file(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as sitk_error:
        image = _read_via_nibabel(path)
        if image is None:
            hint = FORMATS_HINT
            if path.name.lower().endswith(NIBABEL_SUFFIXES):  # nibabel read it fully: the header is the problem
                hint = "SimpleITK cannot use this header (a sheared affine, say); reslice the scan to a plain grid first"
            raise InputError(path, f"not a readable image ({_sitk_message(sitk_error)})", hint) from None
        return image


def _read_via_nibabel(path: Path) -> sitk.Image | None:
    """Formats only nibabel reads (MGH/MGZ, PAR/REC...): let nibabel write a NIfTI copy that SimpleITK reads, so
    neither library's header conventions are re-implemented here."""
    import nibabel as nib

    try:
        source = nib.load(str(path))
        data = np.asarray(source.get_fdata(dtype=np.float32))
    except Exception:
        return None
    with tempfile.TemporaryDirectory(prefix="mrsynth-") as folder:
        copy = Path(folder) / "volume.nii"
        nib.save(nib.Nifti1Image(data, source.affine), str(copy))
        try:
            return sitk.ReadImage(str(copy))
        except RuntimeError:  # e.g. a sheared affine, which ITK's image model cannot represent
            return None


def _read_dicom_folder(path: Path) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
    if not series:
        raise InputError(path, "is a folder without a DICOM series", "give a volume file or a DICOM series folder")
    if len(series) > 1:
        raise InputError(path, f"holds {len(series)} DICOM series", "put one series per folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]))
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(path, f"unreadable DICOM series ({_sitk_message(exc)})", "export the series again") from None


def _as_scalar_3d(image: sitk.Image, path: Path) -> sitk.Image:
    size = "x".join(str(s) for s in image.GetSize())
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"has {image.GetNumberOfComponentsPerPixel()} values per voxel (colour or vector "
                               "image)", "give a scalar (grey-level) volume")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    if image.GetDimension() == 4:
        raise InputError(path, f"is 4-D ({size}: {image.GetSize()[3]} volumes)", "extract one 3-D volume first")
    if image.GetDimension() != 3:
        raise InputError(path, f"is a {image.GetDimension()}-D image ({size})", "mrsynth needs a 3-D volume")
    if min(image.GetSize()) == 1:
        raise InputError(path, f"is a single slice ({size})", "mrsynth needs a 3-D volume")
    return image


def _checked_values(image: sitk.Image, path: Path) -> sitk.Image:
    values = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError(path, "all voxels are NaN or infinite", "check the scan or the tool that wrote it")
    if not np.any(values[finite]):
        raise InputError(path, "all voxels are zero", "check the scan or the tool that wrote it")
    low, high = values[finite].min(), values[finite].max()
    if low == high:
        raise InputError(path, f"all voxels have the same value ({low:g}): no image content",
                         "check the scan or the tool that wrote it")
    if finite.all():
        return image
    warnings.warn(f"{path}: {np.count_nonzero(~finite)} NaN or infinite voxels are treated as background (0)",
                  MrsynthWarning, stacklevel=3)
    cleaned = sitk.GetImageFromArray(np.where(finite, values, np.float32(0)))
    cleaned.CopyInformation(image)
    return cleaned


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """ITK prints warnings straight to stderr from C++ (``WARNING: In .../itkNiftiImageIO.cxx``); mute them."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _write_with_nifti_header(image: sitk.Image, target: Path, reference_path: Path) -> None:
    import nibabel as nib

    reference: Any = nib.load(str(reference_path))
    shape = tuple(int(s) for s in reference.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if tuple(image.GetSize()) != shape:
        raise ValueError(f"image size {image.GetSize()} is not the reference's {shape}: resample it first")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(reference_path))
    reader.ReadImageInformation()
    if not np.allclose(image.GetOrigin(), reader.GetOrigin(), atol=1e-3) or not np.allclose(
        image.GetDirection(), reader.GetDirection(), atol=1e-4
    ):
        raise ValueError("image does not lie on the reference's grid: resample it first")
    # SimpleITK arrays are (z, y, x); NIfTI data is (i, j, k) = (x, y, z).
    data = np.ascontiguousarray(sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)).transpose(2, 1, 0))
    header = reference.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0.0, 0.0  # the reference's display window means nothing for the output
    header["descrip"] = b"mrsynth synthesis"
    # affine=None keeps the header's qform and sform (and their codes) exactly as the reference has them.
    output = type(reference)(data, None, header=header)
    if target.name.lower().endswith(".gz"):
        _write_gzip(target, output)
    else:
        nib.save(output, str(target))


def _write_gzip(target: Path, image: Any) -> None:
    """Gzip through ISA-L: standard gzip that nibabel, ITK and FSL read, several times faster than zlib's level 1.

    Why: nibabel's zlib compression of a float32 240x240x155 output was the largest cost of a synthesis outside
    the model (docs/performance.md). nibabel streams the single-file NIfTI straight into the compressor.
    """
    from isal import igzip

    with igzip.open(target, "wb", compresslevel=1) as stream:
        image.to_stream(stream)
