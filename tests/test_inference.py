"""mrsynth.inference: slicing by anatomy, grid matching, normalisation and channel order, windows, warnings."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from synth_helpers import DEMO_T1, DEMO_T2, assert_same_header, checkpoint, crop, reorient

from mrsynth.data.normalization import normalize
from mrsynth.errors import InputError
from mrsynth.inference import Synthesizer, synthesize
from mrsynth.pipeline.checks import training_mismatch
from mrsynth.pipeline.model import mirrored_mean
from mrsynth.pipeline.slices import SliceWindow
from mrsynth.io import read_volume, resample_to


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("case")
    return {"t1": crop(DEMO_T1, folder / "t1.nii.gz"), "t2": crop(DEMO_T2, folder / "t2.nii.gz"),
            "model": checkpoint(folder / "micro.safetensors", slice_size=[128, 128]), "folder": folder}


@pytest.fixture(scope="module")
def synth(case) -> Synthesizer:
    return Synthesizer(case["model"], device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def baseline(case, synth):
    return synth({"t1": case["t1"], "t2": case["t2"]})


def values(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


INSIDE = (slice(8, 120), slice(16, 112))  # where a 112 x 96 (y, x) crop slice sits, centred, in the 128x128 window


def model_window(case, synth, k: int) -> torch.Tensor:
    """Axial slice k built independently of mrsynth.inference: nibabel data, the checkpoint's normalisation,
    channels (t1, t2), zero-padded to the model's 128x128 window."""
    channels = []
    for contrast in ("t1", "t2"):  # the crop is stored LPS, i.e. already in canonical voxel order
        data = nib.load(str(case[contrast])).get_fdata(dtype=np.float32)
        channels.append(normalize(data, synth.metadata["normalization"])[0])
    batch = np.zeros((1, 2, 128, 128), np.float32)
    batch[0, :, INSIDE[0], INSIDE[1]] = np.stack([c[:, :, k].T for c in channels])
    return torch.from_numpy(batch)


def test_output_is_the_model_applied_to_normalised_axial_slices_in_scenario_order(case, synth, baseline):
    """An independent re-computation of one slice: its window through the model, cropped back."""
    assert baseline.image.GetSize() == (96, 112, 20) and baseline.slices == 20
    out = values(baseline.image)
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.std() > 0
    k = 11
    with torch.inference_mode():
        x = model_window(case, synth, k)
        expected = torch.where((x != 0).any(dim=1), synth.model(x).clamp(0, 1)[:, 0], 0.0)[0][INSIDE].numpy()
    np.testing.assert_allclose(out[k], expected, atol=1e-5)  # where no input has signal, the output is 0


def test_tta_is_the_mean_of_the_slice_and_its_left_right_mirror(case, synth, baseline):
    """--tta re-computed independently on one slice (as above): the model on the window and on its left-right
    mirror, mirrored back, averaged; the result records it and differs from the plain synthesis."""
    mirrored = Synthesizer(case["model"], device="cpu", batch_size=8, tta=True)({"t1": case["t1"], "t2": case["t2"]})
    assert mirrored.tta and mirrored.record()["tta"] is True and baseline.record()["tta"] is False
    k = 7
    with torch.inference_mode():
        x = model_window(case, synth, k)
        plain = synth.model(x)[0, 0].clamp(0, 1)
        flipped = synth.model(x.flip(-1))[0, 0].clamp(0, 1).flip(-1)
    expected = torch.where((x[0] != 0).any(dim=0), 0.5 * (plain + flipped), 0.0)[INSIDE].numpy()
    np.testing.assert_allclose(values(mirrored.image)[k], expected, atol=1e-5)
    assert np.abs(values(mirrored.image) - values(baseline.image)).max() > 1e-3


def test_mirrored_mean_matches_float64_and_is_mirror_equivariant():
    """On the tiny AGI-Net with random weights (not mirror-symmetric itself): float32 against a float64 reference,
    and mirroring the input mirrors the output exactly, which a single forward pass does not."""
    from mrsynth.models import build_model, preset

    torch.manual_seed(0)
    model = build_model(preset("tiny")).eval()
    x = torch.rand(3, 2, 48, 40, generator=torch.Generator().manual_seed(1))

    def forward(net, batch):
        return net(batch)[:, 0].numpy()

    with torch.inference_mode():
        single = mirrored_mean(lambda b: forward(model, b), x)
        mirror_of_input = mirrored_mean(lambda b: forward(model, b), x.flip(-1))
        plain, plain_of_mirror = forward(model, x), forward(model, x.flip(-1))
        reference = mirrored_mean(lambda b: forward(model.double(), b), x.double())
    relative = np.abs(single - reference).max() / np.abs(reference).max()
    assert single.dtype == np.float32 and relative < 1e-5, relative
    np.testing.assert_allclose(mirror_of_input, single[..., ::-1], atol=1e-6)
    assert np.abs(plain_of_mirror - plain[..., ::-1]).max() > 1e-3


def test_channel_order_follows_the_checkpoint_not_the_caller(case, synth, baseline):
    swapped_call = synth({"t2": case["t2"], "t1": case["t1"]})
    assert swapped_call.reference == "t2"
    np.testing.assert_array_equal(values(swapped_call.image), values(baseline.image))
    other = Synthesizer(checkpoint(case["folder"] / "t2t1.safetensors",
                                   scenario={"inputs": ["t2", "t1"], "target": "flair"}, slice_size=[128, 128]),
                        device="cpu")
    reordered = values(other({"t1": case["t1"], "t2": case["t2"]}).image)
    assert np.abs(reordered - values(baseline.image)).max() > 1e-3  # same weights, channels swapped: differs


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "A", "S"), ("P", "S", "R"), ("I", "L", "P")])
def test_any_voxel_order_gives_the_same_synthesis_in_world_space(tmp_path, case, synth, baseline, axcodes):
    t1 = reorient(case["t1"], tmp_path / "t1.nii.gz", axcodes)
    t2 = reorient(case["t2"], tmp_path / "t2.nii.gz", axcodes)
    result = synth({"t1": t1, "t2": t2}, out=tmp_path / "out.nii.gz")
    assert_same_header(result.output, t1)  # written in the reoriented file's own voxel order and header
    back = resample_to(read_volume(result.output), read_volume(case["t1"]))
    assert np.abs(values(back) - values(baseline.image)).max() < 1e-4


def test_inputs_on_other_grids_are_matched(tmp_path, case, synth, baseline):
    t2 = read_volume(case["t2"])
    # 1. a 1.5 mm copy: resampled back onto the T1 grid, the synthesis stays close
    coarse = sitk.Image([round(n / 1.5) for n in t2.GetSize()], sitk.sitkFloat32)
    coarse.SetSpacing((1.5, 1.5, 1.5))
    coarse.SetDirection(t2.GetDirection())
    coarse.SetOrigin(t2.GetOrigin())
    sitk.WriteImage(resample_to(t2, coarse), str(tmp_path / "t2-1.5mm.nii.gz"))
    result = synth({"t1": case["t1"], "t2": tmp_path / "t2-1.5mm.nii.gz"})
    assert result.image.GetSize() == baseline.image.GetSize()
    got, want = values(result.image), values(baseline.image)
    assert np.abs(got - want).mean() < 0.25 * np.abs(want).mean()
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.8
    assert any("voxel size 1.5x1.5x1.5 mm" in w for w in result.warnings)
    # 2. a larger grid shifted by whole voxels: resampling is exact, so is the synthesis
    shifted = sitk.Image([n + 12 for n in t2.GetSize()], sitk.sitkFloat32)
    shifted.SetSpacing(t2.GetSpacing())
    shifted.SetDirection(t2.GetDirection())
    shifted.SetOrigin(t2.TransformIndexToPhysicalPoint((-5, -7, -3)))
    sitk.WriteImage(resample_to(t2, shifted), str(tmp_path / "t2-shifted.nii.gz"))
    result = synth({"t1": case["t1"], "t2": tmp_path / "t2-shifted.nii.gz"})
    np.testing.assert_allclose(values(result.image), want, atol=1e-5)


def test_register_undoes_a_header_that_misplaces_an_input(tmp_path, case, synth, baseline):
    t2 = nib.load(str(case["t2"]))
    affine = t2.affine.copy()
    affine[:3, 3] += [6.0, -4.0, 3.0]  # same voxels, claimed 7.8 mm away from where they are
    moved = tmp_path / "t2-moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(t2.dataobj), affine), str(moved))
    want = values(baseline.image)
    trusting = values(synth({"t1": case["t1"], "t2": moved}).image)
    registered = values(synth({"t1": case["t1"], "t2": moved}, register=True).image)
    error_trusting = np.abs(trusting - want).mean()
    error_registered = np.abs(registered - want).mean()
    assert error_registered < 0.3 * error_trusting, (error_registered, error_trusting)


def test_fields_of_view_that_do_not_overlap_are_refused(tmp_path, case, synth):
    t2 = nib.load(str(case["t2"]))
    affine = t2.affine.copy()
    affine[:3, 3] += [400.0, 0.0, 0.0]
    far = tmp_path / "far.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(t2.dataobj), affine), str(far))
    with pytest.raises(InputError, match="does not overlap") as caught:
        synth({"t1": case["t1"], "t2": far})
    assert caught.value.source == str(far)


def test_missing_contrast_and_wrong_target_are_input_errors(case, synth):
    with pytest.raises(InputError, match="needs t2") as caught:
        synth({"t1": case["t1"]})
    assert caught.value.source == "--t2"
    with pytest.raises(InputError, match="synthesizes"):
        synth({"t1": case["t1"], "t2": case["t2"], "flair": case["t1"]})
    with pytest.raises(InputError, match="not pd"):
        synthesize({"t1": case["t1"], "t2": case["t2"]}, model=case["model"], target="pd", device="cpu")


def test_preview_shows_inputs_and_synthesis(tmp_path, case, synth):
    result = synth({"t1": case["t1"], "t2": case["t2"]}, preview=tmp_path / "p.png")
    picture = matplotlib.image.imread(str(result.preview))
    assert picture.shape[0] > 600 and picture.shape[1] > 600  # three rows (t1, t2, flair) of three views
    brightness = picture[..., :3].mean(axis=2)
    assert (brightness > 0.2).mean() > 0.02  # real anatomy drawn, not a blank canvas
    with pytest.raises(InputError, match="output exists"):
        synth({"t1": case["t1"], "t2": case["t2"]}, preview=tmp_path / "p.png")


def test_tiny_agi_net_runs_slices_in_batches(tmp_path, case):
    """The brief's tiny AGI-Net (CAGR modules included) on a few slices, with odd batch splits."""
    model = checkpoint(tmp_path / "tiny.safetensors", preset_name="tiny", slice_size=[64, 64])
    region = (slice(96, 144), slice(92, 148), slice(70, 74))  # 48 x 56 x 4 voxels inside the brain
    t1 = crop(DEMO_T1, tmp_path / "t1.nii.gz", region)
    t2 = crop(DEMO_T2, tmp_path / "t2.nii.gz", region)
    seen = []
    one = Synthesizer(model, device="cpu", batch_size=3)({"t1": t1, "t2": t2}, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(3, 4), (4, 4)]
    together = Synthesizer(model, device="cpu", batch_size=4)({"t1": t1, "t2": t2})
    np.testing.assert_allclose(values(one.image), values(together.image), atol=1e-5)
    assert values(one.image).std() > 0


def test_slice_window_pads_small_slices_and_crops_only_empty_margins():
    rng = np.random.default_rng(0)
    stack = np.zeros((3, 2, 50, 300), np.float32)
    stack[:, :, 5:45, 100:220] = rng.uniform(0.1, 1, size=(3, 2, 40, 120))
    window = SliceWindow.fit(stack, (64, 256))
    assert window.lengths == (64, 256) and window.starts == (-7, 32)
    cut = window.cut(stack)
    assert cut.shape == (3, 2, 64, 256)
    pasted = np.zeros((3, 50, 300), np.float32)
    window.paste(cut[:, 0], pasted, np.arange(3))
    np.testing.assert_array_equal(pasted, stack[:, 0])
    wide = stack.copy()
    wide[0, 0, 20, [5, 295]] = 1.0  # signal spanning more than 256 columns: no crop
    assert SliceWindow.fit(wide, (64, 256)).lengths == (64, 300)


def test_training_mismatch_warnings(shared_data):
    flair_model = {"voxel_size_mm": [1, 1, 1], "skull_stripped": True}
    head = read_volume(shared_data / "spm12_avg152" / "avg152T1.nii.gz")  # real, with skull, 2 mm
    warned = " | ".join(training_mismatch(head, flair_model, "avg152T1"))
    assert "voxel size 2x2x2 mm" in warned and "still has the skull" in warned
    brain = read_volume(DEMO_T1)  # real, skull-stripped, 1 mm
    assert training_mismatch(brain, flair_model, "t1") == []
    assert "looks skull-stripped" in " ".join(training_mismatch(brain, {"skull_stripped": False}, "t1"))


@pytest.fixture(scope="module")
def intensity_reference(tmp_path_factory) -> Path:
    """A scan in scanner-like units: the crop's T2 (a real intensity distribution), scaled and offset."""
    image = nib.load(str(crop(DEMO_T2, tmp_path_factory.mktemp("reference") / "raw.nii.gz")))
    data = np.asarray(image.dataobj, dtype=np.float32)
    target = tmp_path_factory.mktemp("reference") / "scanner-flair.nii.gz"
    nib.save(nib.Nifti1Image(np.where(data > 0, data * 3.7 + 250.0, 0).astype(np.float32), image.affine), str(target))
    return target


def test_match_intensity_maps_the_foreground_monotonically_onto_the_reference(case, synth, baseline,
                                                                               intensity_reference):
    result = synth({"t1": case["t1"], "t2": case["t2"]}, match_intensity=intensity_reference)
    assert result.intensity == f"matched to {intensity_reference}"
    assert result.record()["intensity"] == result.intensity and baseline.record()["intensity"] == "normalised"
    matched, normalised = values(result.image), values(baseline.image)
    # Background: voxels where every input is zero once normalised (the model's input), as the docs say.
    inputs = [normalize(values(read_volume(case[c])), synth.metadata["normalization"])[0] for c in ("t1", "t2")]
    background = np.all([v == 0 for v in inputs], axis=0)
    assert background.any() and (matched[background] == 0).all()
    fore_matched, fore_normalised = matched[~background], normalised[~background]
    order = np.argsort(fore_normalised, kind="stable")
    assert (np.diff(fore_matched[order]) >= -1e-3).all()  # monotone: the synthesis' contrast ordering is kept
    reference = values(read_volume(intensity_reference))
    reference = reference[reference > reference.mean()]  # the voxels ITK's matcher builds its histogram from
    head = fore_matched[fore_matched > fore_matched.mean()]
    for q in (0.25, 0.5, 0.75):
        assert abs(np.quantile(head, q) - np.quantile(reference, q)) < 0.05 * np.ptp(reference), q
    assert normalised.max() <= 1 < np.median(head)  # no longer in the [0, 1] scale


def test_a_bad_intensity_reference_is_refused_before_any_work(tmp_path, case, synth):
    out = tmp_path / "out.nii.gz"
    broken = tmp_path / "reference.nii.gz"
    broken.write_bytes(b"not a volume")
    with pytest.raises(InputError) as caught:
        synth({"t1": case["t1"], "t2": case["t2"]}, out=out, match_intensity=broken)
    assert caught.value.source == str(broken)
    assert not out.exists()
