"""The raw-scan stages of mrsynth.pipeline: brain mask (--mask, --skull-strip), in-plane resampling to the training
voxel size, N4 bias correction, and the stages a result reports."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from synth_helpers import DEMO_T1, DEMO_T2, assert_one_error_line, assert_same_header, checkpoint, crop
from synth_helpers import run_synthesize as run

from mrsynth.errors import InputError
from mrsynth.inference import Synthesizer
from mrsynth.pipeline.checks import STRIPPED_MAX_LITRES
from mrsynth.io import read_volume, resample_to
from mrsynth.pipeline import brainmask
from mrsynth.pipeline.bias import n4
from mrsynth.pipeline.spacing import working_grid

PLAIN_STAGES = ["read", "align", "normalise", "model", "restore"]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pipeline")
    t1 = crop(DEMO_T1, folder / "c-t1n.nii.gz")
    image = nib.load(str(t1))
    data = np.asarray(image.dataobj)
    brain = np.zeros(data.shape, np.uint8)
    brain[10:80, 12:95, :] = 1  # a box inside the crop's brain: less than what the inputs' non-zero voxels cover
    brain &= (data > 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(brain, image.affine), str(folder / "mask.nii.gz"))
    return {"t1": t1, "t2": crop(DEMO_T2, folder / "c-t2w.nii.gz"), "mask": folder / "mask.nii.gz",
            "model": checkpoint(folder / "micro.safetensors", slice_size=[128, 128]), "folder": folder}


@pytest.fixture(scope="module")
def synth(case) -> Synthesizer:
    return Synthesizer(case["model"], device="cpu", batch_size=8)


def values(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def masked_copy(source: Path, mask: Path, target: Path) -> Path:
    image = nib.load(str(source))
    data = np.asarray(image.dataobj, dtype=np.float32) * (np.asarray(nib.load(str(mask)).dataobj) > 0)
    nib.save(nib.Nifti1Image(data, image.affine), str(target))
    return target


# -- brain mask ----------------------------------------------------------------------------------------------------

def test_a_mask_gives_the_synthesis_of_masked_inputs_and_zero_outside(tmp_path, case, synth):
    """--mask FILE = stripping the inputs by hand first (bit for bit), then zeroing the output outside the mask."""
    result = synth({"t1": case["t1"], "t2": case["t2"]}, out=tmp_path / "out.nii.gz", mask=case["mask"])
    assert result.stages == ["read", "align", "mask", "normalise", "model", "restore", "write"]
    by_hand = synth({"t1": masked_copy(case["t1"], case["mask"], tmp_path / "t1.nii.gz"),
                     "t2": masked_copy(case["t2"], case["mask"], tmp_path / "t2.nii.gz")})
    np.testing.assert_array_equal(values(result.image), values(by_hand.image))
    brain = np.asarray(nib.load(str(case["mask"])).dataobj).transpose(2, 1, 0) > 0
    out = values(read_volume(result.output))
    assert np.all(out[~brain] == 0) and out[brain].std() > 0
    assert_same_header(result.output, case["t1"])
    np.testing.assert_array_equal(values(result.mask), brain)
    in_memory = synth({"t1": case["t1"], "t2": case["t2"]}, mask=read_volume(case["mask"]))  # the Python API
    np.testing.assert_array_equal(values(in_memory.image), values(result.image))


def test_a_mask_on_another_grid_is_resampled_nearest_neighbour(tmp_path, case, synth):
    mask = read_volume(case["mask"])
    coarse = sitk.Image([n // 2 + 4 for n in mask.GetSize()], sitk.sitkFloat32)
    coarse.SetSpacing([2.0 * s for s in mask.GetSpacing()])
    coarse.SetDirection(mask.GetDirection())
    coarse.SetOrigin(mask.TransformIndexToPhysicalPoint((-3, -3, -3)))
    labels = resample_to(mask, coarse, interpolator="nearest") * 7.0  # any non-zero label is brain
    sitk.WriteImage(labels, str(tmp_path / "mask-2mm.nii.gz"))
    result = synth({"t1": case["t1"], "t2": case["t2"]}, mask=tmp_path / "mask-2mm.nii.gz")
    expected = values(resample_to(labels, mask, interpolator="nearest")) != 0
    np.testing.assert_array_equal(values(result.mask), expected)
    assert np.all(values(result.image)[~expected] == 0)


def test_a_mask_that_does_not_overlap_or_has_no_geometry_is_refused(tmp_path, case):
    image = nib.load(str(case["mask"]))
    far = image.affine.copy()
    far[:3, 3] += [0.0, 500.0, 0.0]
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), far), str(tmp_path / "far.nii.gz"))
    bare = nib.Nifti1Image(np.asanyarray(image.dataobj), None)
    bare.header["qform_code"], bare.header["sform_code"] = 0, 0
    nib.save(bare, str(tmp_path / "bare.nii.gz"))
    for mask, problem in (("far.nii.gz", "does not overlap"), ("bare.nii.gz", "no world coordinates")):
        out = tmp_path / "out.nii.gz"
        line = assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--model", case["model"],
                                         "--mask", tmp_path / mask), tmp_path / mask, problem)
        assert not out.exists(), line


def test_skull_strip_without_deepbet_names_the_extra(tmp_path, case, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepbet", None)  # what an environment without the extra looks like
    out = tmp_path / "out.nii.gz"
    line = assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--model", case["model"],
                                     "--skull-strip"), "--skull-strip", 'pip install "mrsynth[bet]"')
    assert "deepbet" in line and not out.exists()


def test_mask_and_skull_strip_together_are_refused(tmp_path, case):
    out = tmp_path / "out.nii.gz"
    assert_one_error_line(run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--model", case["model"],
                              "--mask", case["mask"], "--skull-strip"), "--mask", "--skull-strip")
    assert not out.exists()


def test_skull_strip_needs_a_t1(case):
    pytest.importorskip("deepbet")
    model = checkpoint(case["folder"] / "t2pd.safetensors", scenario={"inputs": ["t2", "pd"], "target": "flair"},
                       slice_size=[128, 128])
    with pytest.raises(InputError, match="no --t1") as caught:
        Synthesizer(model, device="cpu")({"t2": case["t2"], "pd": case["t1"]}, skull_strip=True)
    assert caught.value.source == "--skull-strip"


def test_deepbet_traces_the_brain_of_a_head_with_skull(shared_data):
    """A real head with skull and scalp (SPM12's avg152T1, 2 mm): deepbet's mask holds an adult brain's volume
    (CSF included: under the 2.2 L that the skull warning takes for a stripped brain), inside the head, on the
    image's own grid."""
    pytest.importorskip("deepbet")
    head = read_volume(shared_data / "spm12_avg152" / "avg152T1.nii.gz")
    mask = brainmask.skull_strip(head, "cpu", "avg152T1")
    inside = values(mask).astype(bool)
    litres = inside.sum() * np.prod(head.GetSpacing()) / 1e6
    head_litres = (values(head) > 0).sum() * np.prod(head.GetSpacing()) / 1e6
    assert mask.GetSize() == head.GetSize() and mask.GetOrigin() == head.GetOrigin()
    assert 1.2 < litres < STRIPPED_MAX_LITRES < head_litres, (litres, head_litres)
    assert np.all(values(head)[inside] > 0)


def test_batch_csv_mask_column_and_refusals(tmp_path, case):
    rows = [["subject", "t1", "t2", "mask"], ["a", case["t1"], case["t2"], case["mask"]],
            ["b", case["t1"], case["t2"], ""]]
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    out_dir = tmp_path / "synth"
    result = run("--batch", listing, "--out-dir", out_dir, "--model", case["model"], "--json")
    assert result.exit_code == 0, result.stderr
    records = {r["subject"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert "mask" in records["a"]["stages"] and "mask" not in records["b"]["stages"]
    brain = np.asarray(nib.load(str(case["mask"])).dataobj) > 0
    masked = np.asarray(nib.load(str(out_dir / "a-flair.nii.gz")).dataobj)
    plain = np.asarray(nib.load(str(out_dir / "b-flair.nii.gz")).dataobj)
    assert np.all(masked[~brain] == 0) and np.any(plain[~brain] != 0)
    assert_one_error_line(run("--batch", listing, "--out-dir", tmp_path / "x", "--model", case["model"], "--mask",
                              case["mask"]), "--mask", "'mask' column")
    if "deepbet" in sys.modules or _has_deepbet():
        assert_one_error_line(run("--batch", listing, "--out-dir", tmp_path / "y", "--model", case["model"],
                                  "--skull-strip"), listing, "--skull-strip")


def test_with_a_mask_the_swap_check_judges_the_brain_only(tmp_path, case, synth):
    """Bright voxels outside the brain (fat, marrow, vessels of a raw head: here 2 % of them at twice the T1's
    maximum) make a T1 look T2-weighted to the swap check (median 0.24, skew +5 against the T2's 0.38, +1.6);
    with a brain mask the check sees the brain only, as on the stripped scans its figures come from."""
    image = nib.load(str(case["t1"]))
    data = np.asarray(image.dataobj, dtype=np.float32)
    outside = np.asarray(nib.load(str(case["mask"])).dataobj) == 0
    rng = np.random.default_rng(0)
    data[outside & (rng.random(data.shape) < 0.02 / outside.mean())] = 2 * data.max()
    head = tmp_path / "head-t1.nii.gz"
    nib.save(nib.Nifti1Image(data, image.affine), str(head))

    def swap_warnings(inputs, **options):
        return [w for w in synth(inputs, **options).warnings if "swapped" in w]

    assert swap_warnings({"t1": head, "t2": case["t2"]})  # the false alarm a mask prevents
    assert not swap_warnings({"t1": head, "t2": case["t2"]}, mask=case["mask"])
    assert swap_warnings({"t1": case["t2"], "t2": case["t1"]}, mask=case["mask"])  # a real swap still warns


def test_every_entry_point_runs_the_same_pipeline(tmp_path, case):
    """The Python API, one subject on the command line, and batch mode from a CSV, a folder and a BIDS dataset
    (the last two finding the subject's mask by its file name) write the same voxels for one masked subject."""
    import shutil

    from mrsynth import synthesize

    api = synthesize({"t1": case["t1"], "t2": case["t2"]}, tmp_path / "api.nii.gz", model=case["model"],
                     mask=case["mask"], device="cpu")
    assert "mask" in api.stages
    outputs = {"single": tmp_path / "single.nii.gz", "csv": tmp_path / "csv" / "s-flair.nii.gz",
               "folder": tmp_path / "folder-out" / "s-flair.nii.gz",
               "bids": tmp_path / "deriv" / "sub-s" / "anat" / "sub-s_desc-synth_FLAIR.nii.gz"}
    folder, bids = tmp_path / "folder", tmp_path / "bids" / "sub-s" / "anat"
    bids.mkdir(parents=True)
    folder.mkdir()
    (bids.parents[1] / "dataset_description.json").write_text('{"Name": "one", "BIDSVersion": "1.10.0"}')
    for key, name, bids_name in (("t1", "s-t1n", "sub-s_T1w"), ("t2", "s-t2w", "sub-s_T2w"),
                                 ("mask", "s-brainmask", "sub-s_desc-brain_mask")):
        shutil.copy(case[key], folder / f"{name}.nii.gz")
        shutil.copy(case[key], bids / f"{bids_name}.nii.gz")
    listing = tmp_path / "list.csv"
    listing.write_text(f"subject,t1,t2,mask\ns,{case['t1']},{case['t2']},{case['mask']}\n")
    runs = {"single": ("--t1", case["t1"], "--t2", case["t2"], "--mask", case["mask"], "--out", outputs["single"]),
            "csv": ("--batch", listing, "--out-dir", outputs["csv"].parent),
            "folder": ("--input-dir", folder, "--out-dir", outputs["folder"].parent),
            "bids": ("--bids", bids.parents[1], "--out-dir", tmp_path / "deriv")}
    for name, args in runs.items():
        result = run(*args, "--model", case["model"], "--json")
        assert result.exit_code == 0, (name, result.stderr)
        assert json.loads(result.stdout)["stages"] == api.stages, name
    expected = np.asarray(nib.load(str(api.output)).dataobj)
    assert np.any(expected != 0)
    for name, output in outputs.items():
        np.testing.assert_array_equal(np.asarray(nib.load(str(output)).dataobj), expected, err_msg=name)


def test_the_pipeline_imports_nothing_from_the_api_or_the_command_line():
    """cli -> inference -> pipeline: the stages never reach up (the AST of every module under mrsynth/pipeline)."""
    import ast

    for source in (Path(__file__).resolve().parents[1] / "mrsynth" / "pipeline").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith(("mrsynth.inference", "mrsynth.cli")) for n in names), (source.name, names)


def _has_deepbet() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepbet") is not None


# -- voxel size ----------------------------------------------------------------------------------------------------

def grid(spacing, size, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(-40.0, 20.0, 5.0)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    return image


def test_working_grid_takes_the_training_voxel_size_in_plane_and_keeps_the_field_of_view():
    reference = grid((0.6, 0.6, 3.3), (350, 380, 44))
    working = working_grid(reference, [1.0, 1.0, 1.0])
    assert working.GetSpacing() == (1.0, 1.0, 3.3) and working.GetSize() == (210, 228, 44)
    centre = [reference.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in reference.GetSize()])]
    np.testing.assert_allclose(working.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2 for n in working.GetSize()]), centre[0], atol=1e-9)
    assert working_grid(grid((1.03, 0.97, 3.0), (200, 200, 40)), [1, 1, 1]) is None  # within 5 %: left alone
    assert working_grid(reference, None) is None
    sagittal = grid((3.0, 0.9, 0.9), (60, 256, 256))  # thick axis left-right: in-plane once slices are axial
    assert working_grid(sagittal, [1, 1, 1]).GetSpacing() == (1.0, 1.0, 0.9)


def test_resampling_onto_the_working_grid_is_exact_for_a_linear_ramp():
    """Linear interpolation reproduces a linear function of physical position: a float64 reference."""
    reference = grid((0.6, 0.7, 3.0), (60, 50, 8), direction=(0, 0, 1, 1, 0, 0, 0, 1, 0))  # oblique-free, permuted
    rng = np.random.default_rng(0)
    slope, offset = rng.uniform(-1, 1, 3), rng.uniform(0.5, 2)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in reference.GetSize()], indexing="ij"), -1).reshape(-1, 3)
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    points = np.asarray(reference.GetOrigin()) + (index * reference.GetSpacing()) @ direction.T
    field = (points @ slope + offset).reshape(*reference.GetSize()).transpose(2, 1, 0)
    image = sitk.GetImageFromArray(field.astype(np.float64))
    image.CopyInformation(reference)
    working = working_grid(reference, [1.0, 1.0, 1.0])
    resampled = values(sitk.Resample(image, working, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat64))
    w_index = np.stack(np.meshgrid(*[np.arange(n) for n in working.GetSize()], indexing="ij"), -1).reshape(-1, 3)
    w_points = np.asarray(working.GetOrigin()) + (w_index * working.GetSpacing()) @ direction.T
    expected = (w_points @ slope + offset).reshape(*working.GetSize()).transpose(2, 1, 0)
    inside = resampled != 0
    assert inside.mean() > 0.8
    np.testing.assert_allclose(resampled[inside], expected[inside], rtol=1e-9, atol=1e-9)


def test_a_fine_scan_is_synthesized_at_the_training_voxel_size(tmp_path, case, synth):
    """A 0.6 mm copy of the 1 mm crop: the model sees ~1 mm slices again, so the synthesis on the 0.6 mm grid
    matches the 1 mm synthesis brought onto that grid; without the resampling stage it would not."""
    fine = {}
    for contrast in ("t1", "t2"):
        image = read_volume(case[contrast])
        target = grid((0.6, 0.6, 1.0), [round(n / 0.6) for n in image.GetSize()[:2]] + [image.GetSize()[2]],
                      image.GetDirection(), image.GetOrigin())
        fine[contrast] = tmp_path / f"{contrast}-0.6mm.nii.gz"
        sitk.WriteImage(resample_to(image, target), str(fine[contrast]))
    result = synth(fine, out=tmp_path / "out.nii.gz")
    assert result.stages == ["read", "align", "resample", "normalise", "model", "restore", "write"]
    assert_same_header(result.output, fine["t1"])
    want = values(resample_to(synth({"t1": case["t1"], "t2": case["t2"]}).image, read_volume(fine["t1"])))
    got = values(result.image)
    trained_fine = checkpoint(tmp_path / "m.safetensors", slice_size=[128, 128], voxel_size_mm=[0.6, 0.6, 1])
    unresampled = Synthesizer(trained_fine, device="cpu")(fine)
    assert "resample" not in unresampled.stages
    inside = want > 0
    r_with = np.corrcoef(got[inside], want[inside])[0, 1]
    r_without = np.corrcoef(values(unresampled.image)[inside], want[inside])[0, 1]
    # 0.82 against 0.21 when written: two interpolations blur, and random weights amplify fine texture
    assert r_with > 0.75 and r_with > r_without + 0.3, (r_with, r_without)


# -- bias field ----------------------------------------------------------------------------------------------------

def test_n4_undoes_a_smooth_multiplicative_field():
    """A real T1 block times a known smooth field: N4 of it matches N4 of the T1 itself (the scan has a field
    of its own, so the T1 is no ground truth; what N4 must do is not depend on the field added)."""
    t1 = sitk.Extract(read_volume(DEMO_T1), [160, 200, 60], [40, 20, 45])
    data = values(t1).astype(np.float64)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in data.shape], indexing="ij")
    field = np.exp(0.35 * x - 0.25 * y + 0.15 * z)
    biased = sitk.GetImageFromArray((data * field).astype(np.float32))
    biased.CopyInformation(t1)
    corrected, plain = values(n4(biased)).astype(np.float64), values(n4(t1)).astype(np.float64)
    assert np.all(corrected[data == 0] == 0)  # background stays background
    brain = data > 0
    left = np.std(np.log(corrected[brain] / plain[brain]))
    added = np.std(np.log(field[brain]))
    assert left < 0.2 * added, (left, added)


def test_n4_flag_runs_the_stage(case, synth):
    result = synth({"t1": case["t1"], "t2": case["t2"]}, n4=True, mask=case["mask"])
    assert result.stages == ["read", "align", "mask", "n4", "normalise", "model", "restore"]
    assert values(result.image).std() > 0


def test_json_reports_the_stages(tmp_path, case):
    out = tmp_path / "out.nii.gz"
    result = run("--t1", case["t1"], "--t2", case["t2"], "--out", out, "--model", case["model"], "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["stages"] == [*PLAIN_STAGES, "write"]
