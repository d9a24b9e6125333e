"""The pipeline itself: one subject through every stage, in order, each one a call into its own module.

    check -> read -> align -> mask -> n4 -> resample -> normalise -> slices -> model -> target-median
          -> restore -> match-intensity -> write -> preview

The command line (one subject and batch mode) and the Python API (:func:`mrsynth.synthesize`,
:class:`mrsynth.inference.Synthesizer`) all come here, so they cannot drift apart. A stage with nothing to do
(no mask, no ``--n4``, a scan already at the training voxel size) is skipped and not listed in the result's
``stages``; check and slices always run and are not listed either (``--json`` keeps the names it always had).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

from mrsynth.data.target_median import target_median, to_target_median
from mrsynth.pipeline.align import align
from mrsynth.pipeline.brainmask import apply_mask, brain_mask
from mrsynth.pipeline.checks import identical_inputs, swapped_t1_t2, training_mismatch
from mrsynth.pipeline.model import Progress, predict
from mrsynth.pipeline.normalise import normalise
from mrsynth.pipeline.read import intensity_reference, read_inputs
from mrsynth.pipeline.request import VolumeSource, check_request, describe, subject_name
from mrsynth.pipeline.restore import input_foreground, restore
from mrsynth.pipeline.result import SynthesisResult
from mrsynth.pipeline.slices import stack_channels
from mrsynth.pipeline.spacing import to_working_grid
from mrsynth.pipeline.write import write_output, write_preview

if TYPE_CHECKING:
    import torch

    from mrsynth.intensity import IntensityReference


class LoadedModel(Protocol):
    """What the pipeline needs of a loaded checkpoint (:class:`mrsynth.inference.Synthesizer` is one)."""

    checkpoint: Path
    model: "torch.nn.Module"
    metadata: dict[str, Any]
    inputs: list[str]
    target: str
    device: str
    batch_size: int
    tta: bool
    slice_size: tuple[int, ...]

    @property
    def scenario(self) -> str: ...


def run_pipeline(
    model: LoadedModel,
    inputs: Mapping[str, VolumeSource],
    out: str | Path | None = None,
    *,
    subject: str | None = None,
    register: bool = False,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: Progress | None = None,
    match_intensity: Union[VolumeSource, "IntensityReference", None] = None,
    mask: VolumeSource | None = None,
    skull_strip: bool = False,
    n4: bool = False,
) -> SynthesisResult:
    """Synthesize ``model.target`` for one subject (``Synthesizer.__call__`` is this function).

    ``inputs`` maps contrast names (any spelling: ``t1n``, ``T1w``...) to files or SimpleITK images; its FIRST
    entry is the reference grid. The others are resampled onto it (linear), or rigidly registered to it first
    with ``register=True``. They reach the model in the checkpoint's channel order whatever their order here.
    ``match_intensity``: a scan of the target contrast whose intensity histogram the output is mapped onto
    (:mod:`mrsynth.intensity`); without it the output is in the target's normalised [0, 1] scale.
    ``mask`` (a brain mask, non-zero = brain, on any grid) or ``skull_strip`` (deepbet's mask of the T1):
    every aligned input and the output are zero outside it (:mod:`mrsynth.pipeline.brainmask`). ``n4``:
    N4 bias-field correction of every aligned input (:mod:`mrsynth.pipeline.bias`).
    """
    started = time.perf_counter()
    request = check_request(inputs, model.inputs, model.target, model.scenario, out=out, preview=preview,
                            mask=mask, skull_strip=skull_strip, overwrite=overwrite)
    matching = intensity_reference(match_intensity)
    named, labels, reference = request.named, request.labels, request.reference
    masking = request.mask is not None or skull_strip
    warnings = [f"--{c} is not used by this model ({model.scenario})" for c in named
                if c not in model.inputs and c != reference and not (skull_strip and c == "t1")]

    volumes, read_warnings = read_inputs(named, request.wanted)
    identical_inputs(volumes, labels)
    warnings += read_warnings
    if not masking and model.metadata.get("skull_stripped"):  # with a mask: judged on the brain, below
        warnings += swapped_t1_t2(volumes, labels)
    stages = ["read"]
    for contrast in model.inputs:
        warnings += training_mismatch(volumes[contrast], model.metadata, labels[contrast], check_skull=not masking)

    aligned, align_warnings = align(volumes, labels, reference, register, request.wanted[1:])
    warnings += align_warnings
    stages.append("align")

    brain = None
    if masking:
        brain = brain_mask(request.mask, aligned, volumes[reference], labels, model.device)
        aligned = {c: apply_mask(image, brain) for c, image in aligned.items()}
        warnings += swapped_t1_t2(aligned, labels)
        stages.append("mask")

    if n4:
        from mrsynth.pipeline.bias import n4 as correct

        aligned = {c: correct(aligned[c], brain) for c in model.inputs}
        stages.append("n4")

    canonical_reference, canonical, resampled = to_working_grid(aligned, model.inputs,
                                                                model.metadata.get("voxel_size_mm"))
    if resampled:
        stages.append("resample")

    working, stack = stack_channels(normalise(canonical, model.metadata["normalization"], labels), model.inputs)
    stages.append("normalise")

    synthesis = predict(model.model, stack, device=model.device, batch_size=model.batch_size, tta=model.tta,
                        slice_size=model.slice_size, progress=progress)
    stages.append("model")

    median = target_median(model.metadata)
    if median is not None:  # the checkpoint replaces the output's global level by its training targets' mean
        synthesis = to_target_median(synthesis, stack, median)
        stages.append("target-median")

    foreground = input_foreground(aligned, model.inputs)
    image = restore(synthesis, working, canonical_reference, volumes[reference], foreground=foreground,
                    resampled=resampled, brain=brain)
    stages.append("restore")

    intensity = "normalised"
    if matching is not None:
        from mrsynth.intensity import match_intensity as match

        image = match(image, matching.image, foreground)
        intensity = f"matched to {matching.label}"
        stages.append("match-intensity")

    written = None
    if request.out is not None:
        written = write_output(image, request.out, named[reference], overwrite)
        stages.append("write")

    preview_path = None
    if request.preview is not None:
        title = f"{subject or subject_name(named[reference])}: {model.scenario} with {model.checkpoint.name}"
        preview_path = write_preview(request.preview, stack, synthesis, model.inputs, model.target,
                                     working.GetSpacing(), title, overwrite)
        stages.append("preview")

    return SynthesisResult(
        subject=subject or subject_name(named[reference]), image=image, output=written, preview=preview_path,
        reference=reference, inputs={c: describe(s) for c, s in named.items()}, scenario=model.scenario,
        device=model.device, seconds=time.perf_counter() - started, slices=int(stack.shape[0]), warnings=warnings,
        intensity=intensity, tta=model.tta, stages=stages, mask=brain,
    )
