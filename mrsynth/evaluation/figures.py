"""PNG figures: the Fig. 5-style panel (inputs, ground truth, syntheses, zoomed ROI, error maps) and the Fig. 3
misalignment curve. Matplotlib runs on the Agg backend (no display needed); files are written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mrsynth.io.atomic import atomic_output
from mrsynth.metrics import METRICS

LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM (%)", "mae": "MAE (x100)"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def auto_roi(error: np.ndarray, size: int | None = None) -> tuple[int, int, int]:
    """(y, x, size) of the square where the error is largest on average: where models differ most visibly."""
    from scipy.ndimage import uniform_filter

    h, w = error.shape
    size = int(size or max(16, min(h, w) // 4))
    size = min(size, h, w)
    smooth = uniform_filter(np.asarray(error, dtype=np.float64), size=size, mode="constant")
    cy, cx = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    y = int(np.clip(cy - size // 2, 0, h - size))
    x = int(np.clip(cx - size // 2, 0, w - size))
    return y, x, size


def panel_figure(
    inputs: Mapping[str, np.ndarray],
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    roi: tuple[int, int, int] | None = None,
    title: str = "",
    error_max: float | None = None,
) -> Any:
    """Fig. 5 layout: row 1 inputs, ground truth and each synthesis; row 2 the ROI of each; row 3 |error| maps."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    first_error = np.abs(next(iter(predictions.values())) - truth)
    y, x, size = roi or auto_roi(first_error)
    images = {**{f"input {k}": v for k, v in inputs.items()}, "ground truth": truth, **predictions}
    errors = {name: np.abs(pred - truth) for name, pred in predictions.items()}
    vmax_err = error_max or max(float(np.percentile(e, 99.5)) for e in errors.values()) or 1.0
    cols = len(images)
    fig, axes = plt.subplots(3, cols, figsize=(2.4 * cols, 7.4), squeeze=False)
    for col, (name, image) in enumerate(images.items()):
        top, zoom, err = axes[0, col], axes[1, col], axes[2, col]
        top.imshow(image, cmap="gray", vmin=0, vmax=1)
        top.add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, edgecolor="yellow", linewidth=1))
        top.set_title(name, fontsize=9)
        zoom.imshow(image[y : y + size, x : x + size], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if name in errors:
            shown = err.imshow(errors[name], cmap="inferno", vmin=0, vmax=vmax_err)
            err.set_title(f"|error| {name}", fontsize=8)
        else:
            err.set_visible(False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].set_ylabel("ROI", fontsize=9)
    if errors:
        fig.colorbar(shown, ax=list(axes[2, :]), fraction=0.02, pad=0.01)
    fig.suptitle(title, fontsize=10)
    return fig


def shift_figure(summaries: Sequence[dict[str, Any]], perturbed: str, title: str = "") -> Any:
    """Fig. 3: each metric against the translation magnitude, one line per model (mean ± standard error)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    models = list(dict.fromkeys(s["model"] for s in summaries))
    for ax, metric in zip(axes, METRICS):
        for model in models:
            rows = sorted((s for s in summaries if s["model"] == model), key=lambda s: s["shift_px"])
            xs = np.array([r["shift_px"] for r in rows])
            mean = np.array([r[metric]["mean"] for r in rows])
            sem = np.array([r[metric]["std"] / np.sqrt(max(r["n_slices"], 1)) for r in rows])
            ax.plot(xs, mean, marker="o", label=model)
            ax.fill_between(xs, mean - sem, mean + sem, alpha=0.2)
        ax.set_xlabel(f"translation of {perturbed} (px)")
        ax.set_ylabel(LABELS[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"Random translation of the {perturbed} input", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str | Path, overwrite: bool = False, dpi: int = 120) -> Path:
    """Write a figure as PNG atomically and release its memory."""
    plt = _pyplot()
    try:
        with atomic_output(path, overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)

