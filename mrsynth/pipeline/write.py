"""The write stage: the synthesis as a volume with the reference's header, and the optional preview picture.

Why last and separate: both writers are atomic (a temporary file renamed into place), so an interrupt or an error
anywhere before leaves no partial output; the paths were checked before any work (:mod:`.request`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

    from mrsynth.pipeline.request import VolumeSource


def write_output(image: "sitk.Image", out: Path, reference: "VolumeSource", overwrite: bool) -> Path:
    """Write ``image``; a reference given as a file lends its NIfTI header (:func:`mrsynth.io.write_volume`)."""
    from mrsynth.io import write_volume

    return write_volume(image, out, reference_path=reference if isinstance(reference, Path) else None,
                        overwrite=overwrite)


def write_preview(path: Path, stack: np.ndarray, synthesis: np.ndarray, inputs: Sequence[str], target: str,
                  spacing: Sequence[float], title: str, overwrite: bool) -> Path:
    """Three orthogonal mid-slices of each input (as the model saw it) and of the synthesis, in one PNG."""
    from mrsynth.preview import save_preview

    panels = {f"{c} (input)": stack[:, i] for i, c in enumerate(inputs)}
    panels[f"{target} (synthesized)"] = synthesis
    return save_preview(path, panels, spacing, title=title, overwrite=overwrite)
