"""The check stage: everything about one synthesis request that can be refused before any scan is read.

Why first: reading, registering and running the model take seconds to minutes; an unknown contrast, a missing
input, one file given as two contrasts, a mask together with ``--skull-strip`` or an output that cannot be written
must fail at once, with one line that names the option or file, and leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from mrsynth.contrasts import CONTRASTS, canonical_contrast
from mrsynth.errors import InputError
from mrsynth.io.outputs import check_distinct, check_preview_output, check_volume_output
from mrsynth.pipeline.brainmask import check_mask_options

if TYPE_CHECKING:
    import SimpleITK as sitk

VolumeSource = Union[str, Path, "sitk.Image"]


@dataclass(frozen=True)
class Request:
    """A checked request: the inputs by canonical contrast (the first one is the reference grid), the scans to
    read (``wanted``: the reference, the model's inputs, and the T1 that ``--skull-strip`` needs), the mask and
    the outputs."""

    named: dict[str, VolumeSource]
    wanted: list[str]
    mask: VolumeSource | None
    out: Path | None
    preview: Path | None

    @property
    def reference(self) -> str:
        return next(iter(self.named))

    @property
    def labels(self) -> dict[str, str]:
        """How warnings and errors name each wanted input: its path, or ``<in-memory image>``."""
        return {c: describe(self.named[c]) for c in self.wanted}


def check_request(inputs: Mapping[str, VolumeSource], model_inputs: Sequence[str], target: str, scenario: str, *,
                  out: str | Path | None, preview: str | Path | None, mask: VolumeSource | None, skull_strip: bool,
                  overwrite: bool) -> Request:
    """The request for a model that takes ``model_inputs`` and makes ``target``, or the InputError of its first
    problem: contrasts, mask options (:func:`mrsynth.pipeline.brainmask.check_mask_options`), outputs, and files
    that must be distinct (:func:`mrsynth.io.outputs.check_distinct`)."""
    named = _check_contrasts(inputs, model_inputs, target, scenario)
    mask = Path(mask) if isinstance(mask, (str, Path)) else mask
    check_mask_options(mask is not None, skull_strip)
    if skull_strip and "t1" not in named:
        raise InputError("--skull-strip", "deepbet computes the brain mask on a T1-weighted scan and no --t1 is "
                                          "given", "add --t1 FILE (it need not be a model input), or give your "
                                                   "own --mask FILE")
    out = None if out is None else check_volume_output(out, overwrite)
    preview = None if preview is None else check_preview_output(preview, overwrite)
    scans = {f"--{c}": p for c, p in named.items() if isinstance(p, Path)}
    check_distinct(scans, {"--out": out, "--preview": preview},
                   also_read={"--mask": mask} if isinstance(mask, Path) else None)
    reference = next(iter(named))
    wanted = list(dict.fromkeys([reference, *model_inputs, *(["t1"] if skull_strip else [])]))
    return Request(named=named, wanted=wanted, mask=mask, out=out, preview=preview)


def canonical_or_fail(name: str, label: str) -> str:
    """The canonical contrast for any spelling (``t1n``, ``T1w``...), or an InputError naming ``label``."""
    contrast = canonical_contrast(name)
    if contrast is None:
        raise InputError(label, f"unknown contrast {name!r}", f"use one of {', '.join(CONTRASTS)}")
    return contrast


def describe(source: VolumeSource) -> str:
    """A file's path as given, or ``<in-memory image>`` for a SimpleITK image."""
    return str(source) if isinstance(source, (str, Path)) else "<in-memory image>"


def subject_name(source: VolumeSource) -> str:
    """A subject's name when none is given: the reference file's name without its extensions."""
    if not isinstance(source, (str, Path)):
        return "subject"
    return Path(source).name.split(".")[0]


def _check_contrasts(inputs: Mapping[str, VolumeSource], model_inputs: Sequence[str], target: str,
                     scenario: str) -> dict[str, VolumeSource]:
    """Canonical names, each given once, none the target, every model input present."""
    named: dict[str, VolumeSource] = {}
    for name, source in inputs.items():
        contrast = canonical_or_fail(name, f"--{name}")
        if contrast in named:
            raise InputError(f"--{name}", f"contrast {contrast} is given twice", "give each contrast once")
        if contrast == target:
            raise InputError(f"--{name}", f"{contrast} is the contrast this model synthesizes",
                             "drop it, or choose a model with another target")
        named[contrast] = Path(source) if isinstance(source, (str, Path)) else source
    missing = [c for c in model_inputs if c not in named]
    if missing:
        needed = " ".join(f"--{c} FILE" for c in missing)
        raise InputError(f"--{missing[0]}", f"the model ({scenario}) needs {', '.join(missing)} as well",
                         f"add {needed}, or choose a model for the contrasts you have (mrsynth models)")
    return named
