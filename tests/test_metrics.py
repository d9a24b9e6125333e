"""mrsynth.metrics against float64 numpy and scikit-image, on random and on real slices, and the slice protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrsynth import metrics
from mrsynth.checkpoint import default_normalization
from mrsynth.data.normalization import normalize

TOL = 1e-4  # the acceptance bound; the implementation is expected to do far better (checked below as well)


def ref_psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    mse = np.mean((pred.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float(10 * np.log10(1.0 / mse))


def ref_mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))))


def ref_ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(structural_similarity(pred.astype(np.float64), truth.astype(np.float64), data_range=1.0))


def noisy_pair(rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A truth with smooth structure and flat background, and a noisy, biased prediction of it."""
    from scipy.ndimage import gaussian_filter

    truth = gaussian_filter(rng.random(shape), 2)
    truth = (truth - truth.min()) / (truth.max() - truth.min())
    truth[..., : shape[-2] // 4, :] = 0.0  # empty background rows, as in MRI
    pred = np.clip(0.9 * truth + 0.05 + 0.05 * rng.standard_normal(shape), 0, 1)
    return pred.astype(dtype), truth.astype(dtype)


def check_against_references(pred: np.ndarray, truth: np.ndarray) -> None:
    """Single-slice functions and the batched slice_metrics against the references, slice by slice."""
    batched = metrics.slice_metrics(pred, truth)
    for i in range(pred.shape[0]):
        expected = {"psnr": ref_psnr(pred[i], truth[i]), "ssim": ref_ssim(pred[i], truth[i]),
                    "mae": ref_mae(pred[i], truth[i])}
        single = {"psnr": metrics.psnr(pred[i], truth[i]), "ssim": metrics.ssim(pred[i], truth[i]),
                  "mae": metrics.mae(pred[i], truth[i])}
        assert expected["psnr"] == pytest.approx(peak_signal_noise_ratio(truth[i], pred[i], data_range=1.0), rel=1e-6)
        for name, value in expected.items():
            assert abs(single[name] - value) <= TOL * max(1.0, abs(value)), (name, i)
            assert abs(batched[name][i] - value) <= 1e-9 * max(1.0, abs(value)), (name, i)
            assert single[name] == pytest.approx(batched[name][i], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 7, 7), (4, 31, 45), (37, 64, 64), (2, 240, 240)])
def test_random_slices_match_numpy_and_skimage(shape):
    """37 slices cross the batching chunk (32): chunks must not change any value."""
    rng = np.random.default_rng(sum(shape))
    check_against_references(*noisy_pair(rng, shape))


def test_float32_and_torch_inputs_agree_with_skimage():
    rng = np.random.default_rng(11)
    pred, truth = noisy_pair(rng, (3, 48, 40), np.float32)
    check_against_references(pred, truth)
    # skimage itself computes float32 inputs in float32: still within the acceptance bound
    for i in range(3):
        assert abs(metrics.ssim(pred[i], truth[i]) - structural_similarity(pred[i], truth[i], data_range=1.0)) < TOL
    from_torch = metrics.slice_metrics(torch.from_numpy(pred)[:, None], torch.from_numpy(truth)[:, None])
    np.testing.assert_allclose(from_torch["ssim"], metrics.slice_metrics(pred, truth)["ssim"], rtol=1e-12)


def test_real_slices_match_numpy_and_skimage(shared_data):
    """IXI T2 vs PD (one real dual-echo slice) and BraTS holdout FLAIR vs T2 slices, normalised as in training."""
    import nibabel as nib
    from scipy.io import loadmat

    folder = shared_data / "ixi_IXI040_slice69"
    t2 = loadmat(folder / "IXI040-Guys-0724-T2_69.mat")["dcm"]
    pd = loadmat(folder / "IXI040-Guys-0724-PD_69.mat")["dcm"]
    spec = default_normalization()
    ixi_t2, ixi_pd = normalize(t2, spec)[0][None], normalize(pd, spec)[0][None]
    check_against_references(ixi_t2, ixi_pd)
    case = shared_data / "holdout" / "BraTS-GLI-00001-000"
    flair = normalize(nib.load(case / "BraTS-GLI-00001-000-t2f.nii.gz").get_fdata(), spec)[0]
    t2w = normalize(nib.load(case / "BraTS-GLI-00001-000-t2w.nii.gz").get_fdata(), spec)[0]
    z = [30, 60, 77, 100, 130]
    check_against_references(np.moveaxis(t2w[:, :, z], 2, 0), np.moveaxis(flair[:, :, z], 2, 0))


def test_protocol_reproduces_the_data_readme_calibration(shared_data):
    """data/README.md's figures for the holdout case (measured there independently, with skimage): T2 alone
    19.97 dB / 81.64 %, the mean of T1 and T2 23.09 dB / 82.32 %, on 129 slices with >= 1 % brain."""
    import nibabel as nib

    case = shared_data / "holdout" / "BraTS-GLI-00001-000"

    def load(suffix: str) -> np.ndarray:
        volume = nib.load(case / f"BraTS-GLI-00001-000-{suffix}.nii.gz").get_fdata()
        return np.moveaxis(normalize(volume, default_normalization())[0], 2, 0)  # (axial, H, W)

    t1, t2, flair = load("t1n"), load("t2w"), load("t2f")
    keep = metrics.brain_slices(np.stack([t1, t2], axis=1))
    assert keep.sum() == 129
    for pred, psnr, ssim in ((t2, 19.97, 81.64), (0.5 * (t1 + t2), 23.09, 82.32)):
        summary = metrics.summarize(metrics.slice_metrics(pred[keep], flair[keep]))
        assert summary["psnr"]["mean"] == pytest.approx(psnr, abs=0.006)
        assert summary["ssim"]["mean"] == pytest.approx(ssim, abs=0.006)


def test_brain_slices_rule_is_one_percent_of_any_input():
    stack = np.zeros((4, 2, 64, 64), np.float32)  # 4096 px per slice: 1 % = 40.96 px
    stack[0, 0].flat[:40] = 0.3  # 40 px: below
    stack[1, 0].flat[:41] = 0.3  # 41 px: at least 1 %
    stack[2, 0].flat[:30] = 0.3
    stack[2, 1].flat[30:41] = 0.2  # 30 + 11 px in two inputs: their union counts
    stack[3, 0].flat[:30] = 0.3
    stack[3, 1].flat[:30] = 0.2  # the same 30 px in both: still 30
    np.testing.assert_array_equal(metrics.brain_slices(stack), [False, True, True, False])
    np.testing.assert_array_equal(metrics.brain_slices(stack[:, 0]), [False, True, False, False])
    np.testing.assert_array_equal(metrics.brain_slices(stack, min_fraction=0.005), [True, True, True, True])
    with pytest.raises(ValueError):
        metrics.brain_slices(stack[0, 0])


def test_reporting_units_and_summary():
    rng = np.random.default_rng(2)
    values = {"psnr": np.array([20.0, 30.0, np.inf]), "ssim": 0.8 + 0.1 * rng.random(3),
              "mae": 0.02 + 0.01 * rng.random(3)}
    summary = metrics.summarize(values)
    assert summary["psnr"] == {"mean": 25.0, "std": 5.0, "n": 3, "n_inf": 1}  # a perfect slice is set aside
    assert summary["ssim"]["mean"] == pytest.approx(100 * values["ssim"].mean(), rel=1e-12)
    assert summary["mae"]["std"] == pytest.approx(100 * values["mae"].std(), rel=1e-12)
    assert metrics.to_report_units("mae", 0.0123) == pytest.approx(1.23)
    np.testing.assert_allclose(metrics.to_report_units("ssim", [0.5, 0.25]), [50.0, 25.0])
    same = rng.random((8, 8))
    assert metrics.psnr(same, same) == np.inf and metrics.ssim(same, same) == pytest.approx(1.0)


def test_bad_shapes_raise():
    a = np.random.default_rng(0).random((2, 8, 8))
    with pytest.raises(ValueError):
        metrics.slice_metrics(a, a[:1])
    with pytest.raises(ValueError):
        metrics.ssim(a, a)  # a stack, not one slice
    with pytest.raises(ValueError):
        metrics.slice_metrics(a[:, :6, :6], a[:, :6, :6])  # smaller than the 7x7 window
