"""The read stage: the wanted scans as validated float32 volumes, with what the readers noticed.

Why the warnings are caught here: a reader's :class:`~mrsynth.errors.MrsynthWarning` (NaN voxels, qform and sform
that disagree) belongs to one subject, so it travels in that subject's result (printed once, in batch mode beside
the subject's name) instead of escaping as a bare Python warning.
"""

from __future__ import annotations

import warnings as python_warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mrsynth.errors import MrsynthWarning

if TYPE_CHECKING:
    import SimpleITK as sitk

    from mrsynth.intensity import IntensityReference
    from mrsynth.pipeline.request import VolumeSource


def read_inputs(named: Mapping[str, "VolumeSource"], wanted: Sequence[str]) -> tuple[dict[str, "sitk.Image"],
                                                                                      list[str]]:
    """The ``wanted`` contrasts of ``named``: files read with :func:`mrsynth.io.read_volume`, in-memory images cast
    to float32; plus the readers' MrsynthWarning messages. Other warnings go on to the caller's filters."""
    import SimpleITK as sitk

    from mrsynth.io import read_volume

    volumes = {}
    with python_warnings.catch_warnings(record=True) as caught:
        python_warnings.simplefilter("always", MrsynthWarning)
        for contrast in wanted:
            source = named[contrast]
            volumes[contrast] = read_volume(source) if isinstance(source, Path) else \
                sitk.Cast(source, sitk.sitkFloat32)
    for w in caught:
        if not issubclass(w.category, MrsynthWarning):
            python_warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return volumes, [str(w.message) for w in caught if issubclass(w.category, MrsynthWarning)]


def intensity_reference(source: Union["VolumeSource", "IntensityReference", None]) -> "IntensityReference | None":
    """``--match-intensity`` read once, before the first subject (an already read reference passes through), so a
    bad file stops the run before any work; labelled like the inputs."""
    from mrsynth.intensity import IntensityReference, read_intensity_reference
    from mrsynth.pipeline.request import describe

    if source is None or isinstance(source, IntensityReference):
        return source
    return read_intensity_reference(source, describe(source))
