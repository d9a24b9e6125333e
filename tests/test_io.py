"""mrsynth.io: validated reading, header-keeping atomic writing, canonical orientation, resampling, registration."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from synth_helpers import DEMO_T1, DEMO_T2, assert_same_header, crop, reorient

from mrsynth.errors import InputError, MrsynthWarning
from mrsynth.io import (
    from_canonical,
    overlap_fraction,
    read_volume,
    register_rigid,
    resample_to,
    same_grid,
    to_canonical,
    write_volume,
)
from mrsynth.io import volumes
from mrsynth.io.subjects import find_subjects, read_subject_list


@pytest.fixture(scope="module")
def t1_crop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crop(DEMO_T1, tmp_path_factory.mktemp("crop") / "t1.nii.gz")


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


# -- reading ---------------------------------------------------------------------------------------------------


def test_reads_the_real_demo_scan_as_float32_with_nibabels_values():
    image = read_volume(DEMO_T1)
    assert image.GetSize() == (240, 240, 155) and image.GetPixelID() == sitk.sitkFloat32
    expected = nib.load(str(DEMO_T1)).get_fdata().transpose(2, 1, 0)  # nibabel (x, y, z) -> SimpleITK (z, y, x)
    np.testing.assert_array_equal(array(image), expected)
    assert image.GetSpacing() == (1.0, 1.0, 1.0)


def _bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    raw = DEMO_T1.read_bytes()
    zeros = np.zeros((8, 9, 10), np.float32)

    def nifti(name: str, data: np.ndarray) -> Path:
        path = folder / name
        nib.save(nib.Nifti1Image(data, np.diag([1.2, 1.0, 2.0, 1.0])), str(path))
        return path

    cases = {
        "missing": (folder / "nope.nii.gz", "file not found"),
        "empty": (folder / "empty.nii.gz", "file is empty"),
        "truncated gz": (folder / "truncated.nii.gz", "corrupt, truncated"),
        "truncated nii": (folder / "truncated.nii", "corrupt, truncated"),
        "text named .nii.gz": (folder / "notes.nii.gz", "corrupt, truncated or not an image"),
        "text named .mha": (folder / "notes.mha", "not a readable image"),
        "4-D": (nifti("four.nii.gz", np.ones((8, 9, 10, 3), np.float32)), "is 4-D (8x9x10x3: 3 volumes)"),
        "2-D": (nifti("flat.nii.gz", np.ones((8, 9), np.float32)), "is a 2-D image (8x9)"),
        "one slice": (nifti("slice.nii.gz", np.ones((8, 9, 1), np.float32)), "is a single slice (8x9x1)"),
        "all NaN": (nifti("nan.nii.gz", zeros + np.nan), "all voxels are NaN"),
        "all NaN, NRRD": (folder / "nan.nrrd", "all voxels are NaN"),
        "all zero": (nifti("zero.nii.gz", zeros), "all voxels are zero"),
    }
    (folder / "empty.nii.gz").write_bytes(b"")
    (folder / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    (folder / "truncated.nii").write_bytes(gzip.decompress(raw)[:1_000_000])
    (folder / "notes.nii.gz").write_text("subject 7: see notes\n")
    (folder / "notes.mha").write_text("subject 7: see notes\n")
    sitk.WriteImage(sitk.GetImageFromArray(zeros + np.nan), str(folder / "nan.nrrd"))
    return cases


def test_every_bad_input_is_an_input_error_naming_the_file(tmp_path):
    for label, (path, problem) in _bad_inputs(tmp_path).items():
        with pytest.raises(InputError) as caught:
            read_volume(path)
        assert caught.value.source == str(path), label
        assert problem in caught.value.problem, (label, caught.value.problem)
        assert caught.value.hint, label


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_singleton_fourth_axis_is_squeezed_and_stray_nans_become_background(tmp_path, suffix):
    rng = np.random.default_rng(0)
    data = rng.uniform(1, 100, size=(6, 7, 8, 1)).astype(np.float32)
    data[1, 2, 3, 0] = np.nan
    data[4, 0, 7, 0] = np.inf
    path = tmp_path / f"one-volume{suffix}"
    if suffix == ".nrrd":  # SimpleITK keeps NaN in NRRD (its NIfTI reader zeroes them itself)
        sitk.WriteImage(sitk.GetImageFromArray(data[..., 0].transpose(2, 1, 0)), str(path))
    else:
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.warns(MrsynthWarning, match="2 NaN or infinite voxels are treated as background") as caught:
        image = read_volume(path)
    assert len(caught) == 1  # counted once, by whichever reader still sees them
    assert image.GetSize() == (6, 7, 8)
    expected = np.where(np.isfinite(data[..., 0]), data[..., 0], 0).transpose(2, 1, 0)
    np.testing.assert_array_equal(array(image), expected)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".mgz"])
def test_other_formats_give_the_same_volume_in_the_same_place(tmp_path, t1_crop, suffix):
    """.mha and .nrrd through SimpleITK, .mgz (FreeSurfer) through nibabel: same voxels, same physical grid."""
    reference = read_volume(t1_crop)
    path = tmp_path / f"t1{suffix}"
    if suffix == ".mgz":
        source = nib.load(str(t1_crop))
        nib.save(nib.MGHImage(source.get_fdata(dtype=np.float32), source.affine), str(path))
    else:
        sitk.WriteImage(reference, str(path), True)
    image = read_volume(path)
    np.testing.assert_array_equal(array(image), array(reference))
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=1e-6)


# -- writing ---------------------------------------------------------------------------------------------------


@pytest.fixture
def odd_reference(tmp_path) -> Path:
    """A NIfTI with an oblique RAS-ish affine, anisotropic voxels, int16 + scaling and unusual codes."""
    rng = np.random.default_rng(1)
    rotation = nib.eulerangles.euler2mat(0.2, -0.1, 0.05)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.2, 0.9, 3.0])
    affine[:3, 3] = [-80.5, 60.25, -20.0]
    image = nib.Nifti1Image(rng.integers(0, 1000, (20, 24, 7)).astype(np.int16), affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=4)
    image.header.set_slope_inter(0.5, 3.0)
    path = tmp_path / "reference.nii.gz"
    nib.save(image, str(path))
    return path


def test_written_nifti_keeps_the_reference_header_and_is_float32(tmp_path, odd_reference):
    reference = read_volume(odd_reference)
    rng = np.random.default_rng(2)
    values = rng.uniform(0, 1, size=array(reference).shape).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.CopyInformation(reference)
    out = write_volume(image, tmp_path / "out.nii.gz", reference_path=odd_reference)
    assert_same_header(out, odd_reference)
    written = nib.load(str(out))
    assert (written.header["qform_code"], written.header["sform_code"]) == (1, 4)
    np.testing.assert_array_equal(np.asarray(written.dataobj), values.transpose(2, 1, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz", "reference.nii.gz"]  # no temp file left


def test_existing_output_is_kept_unless_overwrite(tmp_path, t1_crop):
    image = read_volume(t1_crop)
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"precious")
    with pytest.raises(InputError, match="output exists") as caught:
        write_volume(image, out, reference_path=t1_crop)
    assert caught.value.source == str(out) and out.read_bytes() == b"precious"
    write_volume(image, out, reference_path=t1_crop, overwrite=True)
    np.testing.assert_array_equal(array(read_volume(out)), array(image))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_missing_output_folder_is_an_input_error(tmp_path, t1_crop):
    with pytest.raises(InputError, match="does not exist"):
        write_volume(read_volume(t1_crop), tmp_path / "no" / "out.nii.gz")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_interrupted_write_leaves_nothing_behind(tmp_path, t1_crop, monkeypatch, interrupt, suffix):
    def half_then_fail(filename, *args):
        Path(filename).write_bytes(b"half a volume")
        raise interrupt("stopped")

    monkeypatch.setattr(volumes, "_write_gzip", half_then_fail)  # the .nii.gz writer
    monkeypatch.setattr(nib, "save", lambda image, filename: half_then_fail(filename))  # the .nii writer
    with pytest.raises(interrupt):
        write_volume(read_volume(t1_crop), tmp_path / f"out{suffix}", reference_path=t1_crop)
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_standard_gzip_and_keeps_the_data(tmp_path, t1_crop):
    """The ISA-L writer's .nii.gz must read back bit-exactly through Python's gzip, nibabel and SimpleITK."""
    image = read_volume(t1_crop)
    rng = np.random.default_rng(0)
    values = array(image) * rng.uniform(0.5, 1.5, array(image).shape).astype(np.float32)  # no long runs
    noisy = sitk.GetImageFromArray(values)
    noisy.CopyInformation(image)
    out = write_volume(noisy, tmp_path / "out.nii.gz", reference_path=t1_crop)
    plain = nib.Nifti1Image.from_bytes(gzip.decompress(out.read_bytes()))
    np.testing.assert_array_equal(np.asarray(plain.dataobj).transpose(2, 1, 0), values)
    np.testing.assert_array_equal(array(read_volume(out)), values)


def test_non_nifti_output_goes_through_simpleitk(tmp_path, t1_crop):
    image = read_volume(t1_crop)
    out = write_volume(image, tmp_path / "out.mha", reference_path=t1_crop)
    again = read_volume(out)
    assert same_grid(again, image)
    np.testing.assert_array_equal(array(again), array(image))


# -- orientation -----------------------------------------------------------------------------------------------

ORIENTATIONS = [("R", "A", "S"), ("L", "A", "S"), ("P", "S", "R"), ("I", "R", "A")]


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_canonical_order_follows_anatomy_not_disk_order(tmp_path, t1_crop, axcodes):
    original = to_canonical(read_volume(t1_crop))
    stored = read_volume(reorient(t1_crop, tmp_path / "r.nii.gz", axcodes))
    assert nib.aff2axcodes(nib.load(str(t1_crop)).affine) != axcodes  # really another voxel order on disk
    canonical = to_canonical(stored)
    np.testing.assert_array_equal(array(canonical), array(original))
    np.testing.assert_allclose(canonical.GetOrigin(), original.GetOrigin(), atol=1e-4)
    back = from_canonical(canonical, stored)
    assert same_grid(back, stored)
    np.testing.assert_array_equal(array(back), array(stored))


def test_numpy_axis_0_runs_inferior_to_superior():
    image = to_canonical(sitk.DICOMOrient(read_volume(DEMO_T1), "RAI"))
    bottom = image.TransformIndexToPhysicalPoint((0, 0, 0))
    top = image.TransformIndexToPhysicalPoint((0, 0, image.GetSize()[2] - 1))
    assert top[2] - bottom[2] == pytest.approx(154.0)  # LPS z is superior
    assert image.TransformIndexToPhysicalPoint((1, 0, 0))[0] > bottom[0]  # x index grows to the left
    assert image.TransformIndexToPhysicalPoint((0, 1, 0))[1] > bottom[1]  # y index grows to posterior


# -- resampling, overlap, registration -----------------------------------------------------------------------------


def test_resampling_onto_a_voxel_aligned_shifted_grid_is_exact(t1_crop):
    image = read_volume(t1_crop)
    grid = sitk.Image([s + 10 for s in image.GetSize()], sitk.sitkFloat32)
    grid.SetSpacing(image.GetSpacing())
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin(image.TransformIndexToPhysicalPoint((-3, -4, -5)))
    shifted = resample_to(image, grid)
    np.testing.assert_array_equal(array(shifted)[5:-5, 4:-6, 3:-7], array(image))
    assert array(shifted)[:5].max() == 0  # outside the source: the default value
    np.testing.assert_array_equal(array(resample_to(shifted, image)), array(image))


def test_overlap_fraction_of_physical_boxes(t1_crop):
    image = read_volume(t1_crop)
    assert overlap_fraction(image, image) == pytest.approx(1.0)
    half = sitk.Image(image)
    half.SetOrigin(image.TransformContinuousIndexToPhysicalPoint((image.GetSize()[0] / 2, 0, 0)))
    assert overlap_fraction(image, half) == pytest.approx(0.5)
    far = sitk.Image(image)
    far.SetOrigin((1000.0, 0.0, 0.0))
    assert overlap_fraction(image, far) == 0.0


def test_rigid_registration_recovers_a_known_motion_across_contrasts_deterministically():
    fixed = read_volume(DEMO_T1)[56:184, 40:200, 50:110]
    t2 = read_volume(DEMO_T2)[56:184, 40:200, 50:110]
    motion = sitk.Euler3DTransform()
    motion.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint((64, 80, 30)))
    motion.SetRotation(0.04, -0.03, 0.05)  # about 2-3 degrees each
    motion.SetTranslation((4.0, -3.0, 2.0))
    moved = sitk.Resample(t2, t2, motion, sitk.sitkLinear, 0.0)  # moved(p) = t2(motion(p))
    truth = motion.GetInverse()  # fixed point p shows the tissue that `moved` has at truth(p)
    found = register_rigid(fixed, moved, seed=3)
    corners = [fixed.TransformContinuousIndexToPhysicalPoint(c) for c in [(0, 0, 0), (127, 159, 59), (0, 159, 59),
                                                                          (127, 0, 0), (64, 80, 30)]]
    errors = [np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p))) for p in corners]
    assert max(errors) < 1.0, errors  # mm, at the corners of a 128x160x60 mm box; the motion moves them ~10 mm
    again = register_rigid(fixed, moved, seed=3)
    assert again.GetNthTransform(0).GetParameters() == found.GetNthTransform(0).GetParameters()


# -- subject lists ---------------------------------------------------------------------------------------------


def test_subject_csv_maps_spellings_and_relative_paths(tmp_path):
    (tmp_path / "list.csv").write_text("subject,T1n,t2w,out\na,a/t1.nii.gz,/abs/t2.nii.gz,\nb,b/t1.nii.gz,,b.nii.gz\n")
    a, b = read_subject_list(tmp_path / "list.csv")
    assert a.name == "a" and a.inputs == {"t1": tmp_path / "a/t1.nii.gz", "t2": Path("/abs/t2.nii.gz")}
    assert a.output is None and b.output == tmp_path / "b.nii.gz" and list(b.inputs) == ["t1"]
    (tmp_path / "bad.csv").write_text("name,t1\na,x.nii.gz\n")
    with pytest.raises(InputError, match="'subject' column"):
        read_subject_list(tmp_path / "bad.csv")


def test_folder_layouts_are_recognised(tmp_path):
    names = ["BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz", "BraTS-GLI-00001-000/BraTS-GLI-00001-000-t2f.nii.gz",
             "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-PD.nii.gz", "IXI002-Guys-0828-MRA.nii.gz",
             "sub-01/anat/sub-01_ce-gd_T1w.nii.gz", "sub-01/anat/sub-01_T2w.nii.gz", "notes.txt"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = {s.name: sorted(s.inputs) for s in find_subjects(tmp_path)}
    assert found == {"BraTS-GLI-00001-000": ["flair", "t1"], "IXI002-Guys-0828": ["pd", "t1"],
                     "sub-01": ["t1c", "t2"]}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scans with recognised names"):
        find_subjects(tmp_path / "empty")


def test_a_folder_gives_each_subject_the_mask_file_named_after_it(tmp_path):
    names = ["c1/c1-t1n.nii.gz", "c1/c1-t2w.nii.gz", "c1/c1-mask.nii.gz", "c10-t1n.nii.gz", "c10_brainmask.nii.gz",
             "sub-01_T1w.nii.gz", "sub-01_ses-2_T1w.nii.gz", "sub-01_ses-2_desc-brain_mask.nii.gz",
             "other_mask.nii.gz"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = {s.name: s for s in find_subjects(tmp_path)}
    assert {name: s.mask for name, s in found.items()} == {
        "c1": tmp_path / "c1/c1-mask.nii.gz", "c10": tmp_path / "c10_brainmask.nii.gz", "sub-01": None,
        "sub-01_ses-2": tmp_path / "sub-01_ses-2_desc-brain_mask.nii.gz"}  # the longest subject name claims it
    assert all("mask" not in path.name for s in found.values() for path in s.inputs.values())
    (tmp_path / "c1" / "c1_brain_mask.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="second brain mask for subject c1") as caught:
        find_subjects(tmp_path)
    assert caught.value.source == str(tmp_path / "c1" / "c1_brain_mask.nii.gz")
