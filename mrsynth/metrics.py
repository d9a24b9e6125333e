"""Image-quality metrics with the paper's protocol — the one definition training validation and eval share.

Protocol (spec ``cagr.md``, training recipe): images on the normalised [0, 1] scale; PSNR, SSIM and MAE computed
per axial 2-D slice over the *whole* slice (background included), then averaged over the slices in which the brain
(non-zero voxels of any input) covers at least 1 % of the slice.

Units: every function here returns *raw* values — PSNR in dB, SSIM and MAE as fractions of the [0, 1] range. The
paper reports SSIM in % and MAE x100; that scaling is applied only when reporting, by :func:`to_report_units`
(and :data:`REPORT_SCALE`), so that a stored per-slice value can never be scaled twice.

SSIM reproduces ``skimage.metrics.structural_similarity(data_range=...)`` with its defaults (7x7 uniform window,
K1 = 0.01, K2 = 0.03, sample covariance, mean over the interior that is at least 3 px from the border — skimage
crops the reflect-padded border). Windows that lie fully inside the slice do not depend on the padding mode, so
a "valid" box filter gives exactly skimage's cropped map. It is written in numpy (float64) rather than imported
from scikit-image, which stays a test-only dependency, and it is batched over slices because validation calls it
often.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

WIN_SIZE = 7
K1, K2 = 0.01, 0.03
METRICS = ("psnr", "ssim", "mae")
REPORT_SCALE = {"psnr": 1.0, "ssim": 100.0, "mae": 100.0}
REPORT_UNITS = {"psnr": "dB", "ssim": "%", "mae": "x100"}
_CHUNK = 32  # slices per SSIM batch: bounds memory (~10 float64 arrays of CHUNK x H x W) without slowing it


def _as_float64(array: Any) -> np.ndarray:
    """Accept numpy arrays, memmaps and torch tensors (any device) alike."""
    if hasattr(array, "detach"):
        array = array.detach().to("cpu").double().numpy()
    return np.asarray(array, dtype=np.float64)


def _pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_float64(pred), _as_float64(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground-truth shape {t.shape}")
    return p, t


def _psnr_from_mse(mse: np.ndarray, data_range: float) -> np.ndarray:
    # A perfect slice has infinite PSNR, as in skimage; it is kept (not clipped) so that it stays visible.
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10((data_range**2) / mse)


def psnr(pred: Any, truth: Any, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over the whole array (one 2-D slice in the protocol)."""
    p, t = _pair(pred, truth)
    return float(_psnr_from_mse(np.mean((p - t) ** 2), data_range))


def mae(pred: Any, truth: Any) -> float:
    """Mean absolute error as a fraction of the [0, 1] range (reported x100 by :func:`to_report_units`)."""
    p, t = _pair(pred, truth)
    return float(np.mean(np.abs(p - t)))


def _box_mean(stack: np.ndarray) -> np.ndarray:
    """Mean over every fully-inside 7x7 window of each slice of an (N, H, W) stack (integral image)."""
    n, h, w = stack.shape
    integral = np.zeros((n, h + 1, w + 1), dtype=np.float64)
    np.cumsum(stack, axis=1, out=integral[:, 1:, 1:])
    np.cumsum(integral[:, 1:, 1:], axis=2, out=integral[:, 1:, 1:])
    k = WIN_SIZE
    sums = integral[:, k:, k:] - integral[:, :-k, k:] - integral[:, k:, :-k] + integral[:, :-k, :-k]
    return sums / (k * k)


def ssim_map(x: Any, y: Any, box: Callable[[Any], Any], data_range: float = 1.0) -> Any:
    """The SSIM map of two images or stacks, given ``box``, the 7x7 local mean over every fully-inside window.

    Written once for numpy arrays (the reported metric, :func:`_box_mean`) and torch tensors (training's
    differentiable SSIM term, ``avg_pool2d``), so that the loss optimises exactly the figure that is reported.
    """
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1.0)  # sample covariance, skimage's default
    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _ssim_stack(p: np.ndarray, t: np.ndarray, data_range: float) -> np.ndarray:
    """Per-slice SSIM of two float64 (N, H, W) stacks."""
    if p.shape[-1] < WIN_SIZE or p.shape[-2] < WIN_SIZE:
        raise ValueError(f"SSIM needs slices of at least {WIN_SIZE}x{WIN_SIZE}, got {p.shape[-2:]}")
    out = np.empty(p.shape[0], dtype=np.float64)
    for start in range(0, p.shape[0], _CHUNK):
        chunk = ssim_map(p[start : start + _CHUNK], t[start : start + _CHUNK], _box_mean, data_range)
        out[start : start + _CHUNK] = chunk.mean(axis=(1, 2))
    return out


def ssim(pred: Any, truth: Any, data_range: float = 1.0) -> float:
    """Structural similarity of one 2-D slice as a fraction (skimage's definition; reported in %)."""
    p, t = _pair(pred, truth)
    if p.ndim != 2:
        raise ValueError(f"ssim() takes one 2-D slice, got shape {p.shape}; use slice_metrics() for a stack")
    return float(_ssim_stack(p[None], t[None], data_range)[0])


def slice_metrics(pred: Any, truth: Any, data_range: float = 1.0) -> dict[str, np.ndarray]:
    """Per-slice PSNR (dB), SSIM and MAE (fractions) of an (N, H, W) stack — or (N, 1, H, W) model output.

    Returns ``{"psnr": (N,), "ssim": (N,), "mae": (N,)}`` float64 arrays, raw units (see module docstring).
    """
    p, t = _pair(pred, truth)
    if p.ndim == 4 and p.shape[1] == 1:
        p, t = p[:, 0], t[:, 0]
    if p.ndim == 2:
        p, t = p[None], t[None]
    if p.ndim != 3:
        raise ValueError(f"slice_metrics() takes an (N, H, W) stack, got shape {p.shape}")
    diff = p - t
    mse = np.mean(diff**2, axis=(1, 2))
    return {
        "psnr": _psnr_from_mse(mse, data_range),
        "ssim": _ssim_stack(p, t, data_range),
        "mae": np.mean(np.abs(diff), axis=(1, 2)),
    }


def brain_slices(inputs: Any, min_fraction: float = 0.01) -> np.ndarray:
    """Boolean mask over axial slices: True where the brain covers at least ``min_fraction`` of the slice.

    ``inputs`` is an (N, C, H, W) stack of the model's input slices (N axial slices, C input contrasts) or an
    (N, H, W) stack of one contrast. The brain is the non-zero voxels of *any* input — after normalisation
    negatives are clipped to 0, so this is the skull-stripped brain (or the head, for unstripped scans).
    """
    x = inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else np.asarray(inputs)
    if x.ndim == 4:
        nonzero = (x != 0).any(axis=1)
    elif x.ndim == 3:
        nonzero = x != 0
    else:
        raise ValueError(f"brain_slices() takes an (N, C, H, W) or (N, H, W) stack, got shape {x.shape}")
    return nonzero.mean(axis=(1, 2)) >= min_fraction


def to_report_units(metric: str, values: Any) -> Any:
    """Scale raw values to the paper's reporting units: PSNR dB, SSIM %, MAE x100."""
    scaled = np.asarray(values, dtype=np.float64) * REPORT_SCALE[metric]
    return scaled if scaled.ndim else float(scaled)


def summarize(values: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (population, ddof=0) of per-slice raw values, in reporting units.

    Non-finite PSNR values (perfect slices) are left out of the PSNR mean and counted in ``n_inf``, so one
    identical slice cannot turn a whole table into ``inf``.
    """
    summary: dict[str, dict[str, float]] = {}
    for name in METRICS:
        if name not in values:
            continue
        scaled = np.asarray(to_report_units(name, values[name]), dtype=np.float64).ravel()
        finite = scaled[np.isfinite(scaled)]
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "std": float(finite.std()) if finite.size else float("nan"),
            "n": int(scaled.size),
            "n_inf": int(scaled.size - finite.size),
        }
    return summary
