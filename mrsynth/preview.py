"""A picture to look at before trusting the numbers: three orthogonal mid-slices of every input and the synthesis.

A misregistered input, a flipped axis or a wrongly normalised scan is obvious in such a picture and invisible in a
PSNR. The figure is drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend change, so
it is safe inside a notebook) and written atomically like every other output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mrsynth.io.atomic import atomic_output

VIEWS = ("axial", "coronal", "sagittal")


def mid_slices(volume: np.ndarray, centre: Sequence[int]) -> dict[str, np.ndarray]:
    """Axial, coronal and sagittal slices through ``centre`` (z, y, x) of a canonical (LPS, z-y-x) volume, turned
    for display: anterior up in the axial view, superior up in the others, patient right on the left."""
    z, y, x = centre
    return {
        "axial": volume[z],
        "coronal": np.flipud(volume[:, y, :]),
        "sagittal": np.flipud(volume[:, :, x]),
    }


def signal_centre(volumes: Sequence[np.ndarray]) -> tuple[int, int, int]:
    """Centre of the box around all non-zero voxels (the middle of the array when there are none), so the slices
    cut through the head rather than through an empty margin of the field of view."""
    signal = np.zeros(volumes[0].shape, dtype=bool)
    for volume in volumes:
        signal |= volume > 0
    centre = []
    for axis in range(3):
        hits = np.flatnonzero(signal.any(axis=tuple(a for a in range(3) if a != axis)))
        centre.append(int((hits[0] + hits[-1]) // 2) if hits.size else signal.shape[axis] // 2)
    return centre[0], centre[1], centre[2]


def save_preview(
    path: str | Path,
    panels: Mapping[str, np.ndarray],
    spacing: Sequence[float],
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """Write a PNG with one row per volume in ``panels`` (label -> canonical z-y-x array in [0, 1]) and one column
    per view; ``spacing`` is the canonical (x, y, z) voxel size, so anisotropic voxels are drawn to scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sx, sy, sz = (float(s) for s in spacing)
    aspects = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}
    centre = signal_centre(list(panels.values()))
    figure = Figure(figsize=(9, 3 * len(panels) + 0.6), layout="constrained", facecolor="black")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), len(VIEWS), squeeze=False)
    for row, (label, volume) in enumerate(panels.items()):
        for column, (view, picture) in enumerate(mid_slices(volume, centre).items()):
            ax = axes[row][column]
            ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspects[view], interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(view, color="white", fontsize=10)
            if column == 0:
                ax.text(-0.04, 0.5, label, transform=ax.transAxes, rotation=90, ha="right", va="center",
                        color="white", fontsize=10)
    if title:
        figure.suptitle(title, color="white", fontsize=10)
    with atomic_output(path, overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=100, facecolor="black")
    return Path(path)
