"""Slice-wise volumetric inference: real scans in, a synthesized contrast on the reference scan's grid out.

The model is 2-D, so a volume is cut into axial slices. "Axial" must mean anatomy, not the order voxels happen to
be stored in, so every input is first put on the reference grid (SimpleITK resampling or rigid registration) and
then into one canonical voxel order (:func:`mrsynth.io.to_canonical`) before slicing; the synthesis goes back the
same way and is written with the reference's own header. A scan stored LPS or RAS therefore gives the same
synthesis in world space. The stages in between (brain mask, N4, the working grid at the training voxel size,
normalisation, restore) are the small modules of :mod:`mrsynth.pipeline`; the result lists those that ran.

Library use (a notebook)::

    from mrsynth.inference import Synthesizer
    synth = Synthesizer.from_spec("weights/model.safetensors", inputs=["t1", "t2"])
    result = synth({"t1": "a-t1n.nii.gz", "t2": "a-t2w.nii.gz"}, out="a-flair.nii.gz")
    result.image  # SimpleITK image on the T1 grid, values in the target's normalised [0, 1] scale
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from mrsynth.contrasts import CONTRASTS, canonical_contrast, contrast_from_filename
from mrsynth.data.background import outside_inputs_to_zero
from mrsynth.devices import resolve_device
from mrsynth.errors import InputError
from mrsynth.io import resample_to, to_canonical
from mrsynth.io.subjects import Subject
from mrsynth.pipeline.align import align
from mrsynth.pipeline.brainmask import apply_mask, check_mask_options, mask_on_grid, read_mask, skull_strip
from mrsynth.pipeline.normalise import normalise
from mrsynth.pipeline.restore import to_reference_grid, zero_outside
from mrsynth.pipeline.spacing import working_grid

if TYPE_CHECKING:
    import SimpleITK as sitk
    import torch

    from mrsynth.intensity import IntensityReference

VolumeSource = Union[str, Path, "sitk.Image"]
Progress = Callable[[int, int], None]
"""progress(slices_done, slices_total), called after every batch."""

DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
"""CPU: large enough that oneDNN convolutions run at full speed, small enough for a paper-width model at 240x240
(about 0.3 GB of activations per slice) on a laptop. GPU: a paper-width model at batch 32 needs a few GB."""
VOXEL_SIZE_TOLERANCE = 0.3  # relative difference to the training voxel size that earns a warning
STRIPPED_MAX_LITRES = 2.2  # a skull-stripped adult brain (CSF included) stays below this much non-zero tissue
HEAD_MIN_LITRES = 3.0  # a head with skull and scalp has at least this much
STRIPPED_MIN_BACKGROUND = 0.3  # skull stripping leaves exact zeros around the brain


@dataclass
class SynthesisResult:
    """What one synthesis produced and what the user should know about it."""

    subject: str
    image: "sitk.Image"
    output: Path | None
    preview: Path | None
    reference: str
    inputs: dict[str, str]
    scenario: str
    device: str
    seconds: float
    slices: int
    warnings: list[str] = field(default_factory=list)
    intensity: str = "normalised"
    """``normalised`` (the target's [0, 1] scale) or ``matched to <scan>`` (``--match-intensity``)."""
    tta: bool = False
    stages: list[str] = field(default_factory=list)
    """The pipeline stages that ran, in order (:mod:`mrsynth.pipeline`): a skipped stage is not listed."""
    mask: "sitk.Image | None" = None
    """The brain mask applied (uint8 on the reference grid), from ``--mask`` or ``--skull-strip``; None without."""

    def record(self) -> dict[str, Any]:
        """The JSON line of ``--json``."""
        return {
            "subject": self.subject, "status": "ok", "output": _str(self.output), "preview": _str(self.preview),
            "reference": self.reference, "inputs": self.inputs, "scenario": self.scenario,
            "target": self.scenario.rpartition("->")[2], "device": self.device,
            "seconds": round(self.seconds, 3), "slices": self.slices, "intensity": self.intensity,
            "tta": self.tta, "stages": self.stages, "warnings": self.warnings,
        }


class Synthesizer:
    """A checkpoint loaded once, ready to synthesize any number of subjects (batch mode reuses it)."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_size: int | None = None,
                 tta: bool = False, target: str | None = None, available: list[str] | None = None) -> None:
        """``target`` and ``available`` (the contrasts at hand) choose the scenario of an imputation checkpoint
        (mmgan, :mod:`mrsynth.imputation`); a checkpoint trained for one scenario ignores them."""
        from mrsynth.checkpoint import load_checkpoint

        self.checkpoint = Path(checkpoint)
        self.tta = tta
        self.device = resolve_device(device)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        if batch_size is not None and batch_size < 1:
            raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE[kind]
        self.model, self.metadata = load_checkpoint(self.checkpoint, self.device)
        scenario = self.metadata.get("scenario") or {}
        self.inputs: list[str] = [str(c) for c in scenario.get("inputs", [])]
        self.target: str = str(scenario.get("target", ""))
        if self.metadata.get("imputation") and self.model.config.in_channels == len(self.inputs):
            self.model = self._imputer(target, available)
        elif not self.inputs or not self.target or self.model.config.in_channels != len(self.inputs):
            raise InputError(self.checkpoint, "checkpoint metadata has no usable scenario (inputs -> target)",
                             "re-save the checkpoint with mrsynth.checkpoint.save_checkpoint")
        self.slice_size = tuple(int(s) for s in self.metadata.get("slice_size") or (0, 0))

    @classmethod
    def from_spec(cls, model: str | Path | None, inputs: list[str], target: str | None = None,
                  device: str = "auto", batch_size: int | None = None, tta: bool = False) -> "Synthesizer":
        """Resolve ``--model`` (path, registry name, ``hf://``, or None for the registry default) and load it."""
        target = _canonical_or_fail(target, "--target") if target else None
        path = resolve_checkpoint(model, inputs, target)
        synthesizer = cls(path, device=device, batch_size=batch_size, tta=tta, target=target, available=inputs)
        if target and synthesizer.target != target:
            raise InputError(path, f"this model synthesizes {synthesizer.target}, not {target}",
                             "drop --target (or rename the output) or choose a model for that target (mrsynth models)")
        return synthesizer

    @property
    def scenario(self) -> str:
        return f"{','.join(self.inputs)}->{self.target}"

    def _imputer(self, target: str | None, available: list[str] | None) -> "torch.nn.Module":
        """An imputation checkpoint as the model of one scenario: ``target`` from the rest of its contrast set that
        is ``available``. Without a target, the one contrast of the set that is not available is it."""
        from mrsynth.imputation import ImputationSpec, Imputer

        spec = ImputationSpec.from_dict(self.metadata["imputation"])
        if target is None:
            absent = [c for c in spec.contrasts if available is not None and c not in available]
            if len(absent) != 1:
                raise InputError("--target", f"this model imputes any of {', '.join(spec.contrasts)} from the "
                                 "others; say which one to synthesize",
                                 "add --target CONTRAST, or an --out name that ends in it")
            target = absent[0]
        try:
            present = spec.scenario(target, available)
        except ValueError as exc:
            raise InputError(self.checkpoint, str(exc), f"its contrasts are {', '.join(spec.contrasts)}: choose the "
                             "target among them and give the others, or choose another model") from None
        self.inputs, self.target = present, target
        return Imputer(self.model, spec, present, target).to(self.device).eval()

    def __call__(
        self,
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
        """Synthesize the target for one subject.

        ``inputs`` maps contrast names (any spelling: ``t1n``, ``T1w``...) to files or SimpleITK images; its FIRST
        entry is the reference grid. The others are resampled onto it (linear), or rigidly registered to it first
        with ``register=True``. They reach the model in the checkpoint's channel order whatever their order here.
        ``match_intensity``: a scan of the target contrast whose intensity histogram the output is mapped onto
        (:mod:`mrsynth.intensity`); without it the output is in the target's normalised [0, 1] scale.
        ``mask`` (a brain mask, non-zero = brain, on any grid) or ``skull_strip`` (deepbet's mask of the T1):
        every aligned input and the output are zero outside it (:mod:`mrsynth.pipeline.brainmask`). ``n4``:
        N4 bias-field correction of every aligned input (:mod:`mrsynth.pipeline.bias`).
        """
        import SimpleITK as sitk

        from mrsynth.io.outputs import check_distinct, check_preview_output, check_volume_output

        started = time.perf_counter()
        named = self._check_inputs(inputs)
        mask = Path(mask) if isinstance(mask, (str, Path)) else mask
        self._check_mask_options(named, mask, skull_strip)
        out = None if out is None else check_volume_output(out, overwrite)
        preview = None if preview is None else check_preview_output(preview, overwrite)
        sources = {f"--{c}": p for c, p in named.items() if isinstance(p, Path)}
        if isinstance(mask, Path):
            sources["--mask"] = mask
        check_distinct(sources, {"--out": out, "--preview": preview})
        intensity_reference = _intensity_reference(match_intensity)
        reference_name = next(iter(named))
        stripped_on = "t1" if skull_strip else None
        warnings = [f"--{c} is not used by this model ({self.scenario})" for c in named
                    if c not in self.inputs and c != reference_name and c != stripped_on]
        wanted = list(dict.fromkeys([reference_name, *self.inputs, *([stripped_on] if stripped_on else [])]))
        volumes, read_warnings = self._read(named, wanted)
        stages = ["read"]
        warnings += read_warnings
        reference = volumes[reference_name]
        masking = mask is not None or skull_strip
        for contrast in self.inputs:
            warnings += training_mismatch(volumes[contrast], self.metadata, _describe(named[contrast]),
                                          check_skull=not masking)
        labels = {c: _describe(named[c]) for c in wanted}
        aligned, align_warnings = align(volumes, labels, reference_name, register, wanted[1:])
        warnings += align_warnings
        stages.append("align")
        brain = None
        if masking:
            brain = self._brain_mask(mask, aligned, reference, named)
            aligned = {c: apply_mask(image, brain) for c, image in aligned.items()}
            stages.append("mask")
        if n4:
            from mrsynth.pipeline.bias import n4 as correct

            aligned = {c: correct(aligned[c], brain) for c in self.inputs}
            stages.append("n4")
        canonical_reference = to_canonical(aligned[self.inputs[0]])
        grid = working_grid(canonical_reference, self.metadata.get("voxel_size_mm"))
        canonical = {c: to_canonical(aligned[c]) for c in self.inputs}
        if grid is not None:
            canonical = {c: resample_to(image, grid) for c, image in canonical.items()}
            stages.append("resample")
        working, stack = self._stack(normalise(canonical, self.metadata["normalization"], labels))
        stages.append("normalise")
        synthesis = self._run(stack, progress)
        stages.append("model")
        image = to_reference_grid(synthesis, working, canonical_reference, reference)
        foreground = np.any([sitk.GetArrayViewFromImage(aligned[c]) > 0 for c in self.inputs], axis=0)
        if grid is not None:  # interpolation back onto the reference grid smears the edge into the background
            image = zero_outside(image, foreground)
        if brain is not None:
            image = apply_mask(image, brain)
        stages.append("restore")
        intensity = "normalised"
        if intensity_reference is not None:
            from mrsynth.intensity import match_intensity as match

            image = match(image, intensity_reference.image, foreground)
            intensity = f"matched to {intensity_reference.label}"
            stages.append("match-intensity")
        written = None
        if out is not None:
            from mrsynth.io import write_volume

            source = named[reference_name]
            written = write_volume(image, out, reference_path=source if isinstance(source, Path) else None,
                                   overwrite=overwrite)
            stages.append("write")
        preview_path = None
        if preview is not None:
            from mrsynth.preview import save_preview

            panels = {f"{c} (input)": stack[:, i] for i, c in enumerate(self.inputs)}
            panels[f"{self.target} (synthesized)"] = synthesis
            preview_path = save_preview(preview, panels, working.GetSpacing(), title=self._title(subject, named),
                                        overwrite=overwrite)
            stages.append("preview")
        return SynthesisResult(
            subject=subject or _subject_name(named[reference_name]), image=image, output=written, preview=preview_path,
            reference=reference_name, inputs={c: _describe(s) for c, s in named.items()}, scenario=self.scenario,
            device=self.device, seconds=time.perf_counter() - started, slices=int(stack.shape[0]), warnings=warnings,
            intensity=intensity, tta=self.tta, stages=stages, mask=brain,
        )

    # -- steps ---------------------------------------------------------------------------------------------------

    def _check_inputs(self, inputs: Mapping[str, VolumeSource]) -> dict[str, VolumeSource]:
        named: dict[str, VolumeSource] = {}
        for name, source in inputs.items():
            contrast = _canonical_or_fail(name, f"--{name}")
            if contrast in named:
                raise InputError(f"--{name}", f"contrast {contrast} is given twice", "give each contrast once")
            if contrast == self.target:
                raise InputError(f"--{name}", f"{contrast} is the contrast this model synthesizes",
                                 "drop it, or choose a model with another target")
            named[contrast] = Path(source) if isinstance(source, (str, Path)) else source
        files: dict[str, str] = {}
        for contrast, source in named.items():
            if isinstance(source, Path):
                key = os.path.realpath(source)
                if key in files:
                    raise InputError(source, f"is given as both --{files[key]} and --{contrast}",
                                     "give each contrast its own scan")
                files[key] = contrast
        missing = [c for c in self.inputs if c not in named]
        if missing:
            needed = " ".join(f"--{c} FILE" for c in missing)
            raise InputError(f"--{missing[0]}", f"the model ({self.scenario}) needs {', '.join(missing)} as well",
                             f"add {needed}, or choose a model for the contrasts you have (mrsynth models)")
        return named

    @staticmethod
    def _check_mask_options(named: dict[str, VolumeSource], mask: VolumeSource | None, skull_strip: bool) -> None:
        """Before any work: one source of brain mask, and what ``--skull-strip`` needs (deepbet, a T1)."""
        check_mask_options(mask is not None, skull_strip)
        if skull_strip and "t1" not in named:
            raise InputError("--skull-strip", "deepbet computes the brain mask on a T1-weighted scan and no --t1 is "
                                              "given", "add --t1 FILE (it need not be a model input), or give your "
                                                       "own --mask FILE")

    def _read(self, named: dict[str, VolumeSource], wanted: list[str]) -> tuple[dict[str, "sitk.Image"], list[str]]:
        """The volumes, and the readers' :class:`MrsynthWarning` messages (NaN voxels, qform/sform) plus what
        comparing the inputs with each other shows (:func:`input_mixups`), for the result's warnings."""
        import warnings as python_warnings

        import SimpleITK as sitk

        from mrsynth.errors import MrsynthWarning
        from mrsynth.io import read_volume

        volumes = {}
        with python_warnings.catch_warnings(record=True) as caught:
            python_warnings.simplefilter("always", MrsynthWarning)
            for contrast in wanted:
                source = named[contrast]
                volumes[contrast] = read_volume(source) if isinstance(source, Path) else \
                    sitk.Cast(source, sitk.sitkFloat32)
        messages = [str(w.message) for w in caught if issubclass(w.category, MrsynthWarning)]
        for w in caught:  # anything else goes on to the caller's filters
            if not issubclass(w.category, MrsynthWarning):
                python_warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        labels = {c: _describe(named[c]) for c in wanted}
        return volumes, messages + input_mixups(volumes, labels, self.metadata.get("skull_stripped"))

    def _brain_mask(self, mask: VolumeSource | None, aligned: dict[str, "sitk.Image"], reference: "sitk.Image",
                    named: dict[str, VolumeSource]) -> "sitk.Image":
        """The brain mask on the reference grid: the user's (resampled nearest-neighbour) or deepbet's, computed
        on the T1 as it lies on the reference grid."""
        if mask is None:
            return skull_strip(aligned["t1"], self.device, _describe(named["t1"]))
        if isinstance(mask, Path):
            return read_mask(mask, reference)
        return mask_on_grid(mask, reference, "<in-memory mask>")

    def _stack(self, canonical: dict[str, "sitk.Image"]) -> tuple["sitk.Image", np.ndarray]:
        """(Z, C, Y, X) float32 in canonical voxel order, channels in the checkpoint's input order."""
        import SimpleITK as sitk

        stack = np.stack([sitk.GetArrayFromImage(canonical[c]) for c in self.inputs], axis=1)
        return canonical[self.inputs[0]], stack

    def _run(self, stack: np.ndarray, progress: Progress | None) -> np.ndarray:
        """The model over every axial slice that has signal, in batches; slices without any signal stay 0, and so
        does every voxel where all inputs are 0 (:func:`outside_inputs_to_zero`)."""
        import torch

        window = SliceWindow.fit(stack, self.slice_size)
        synthesis = np.zeros((stack.shape[0], *stack.shape[2:]), dtype=np.float32)
        active = np.flatnonzero(stack.reshape(stack.shape[0], -1).any(axis=1))
        done = 0
        with torch.inference_mode():
            for start in range(0, len(active), self.batch_size):
                index = active[start:start + self.batch_size]
                batch = torch.from_numpy(window.cut(stack[index])).to(self.device)
                predicted = mirrored_mean(self._forward, batch) if self.tta else self._forward(batch)
                window.paste(predicted, synthesis, index)
                done += len(index)
                if progress is not None:
                    progress(done, len(active))
        return outside_inputs_to_zero(synthesis, stack)

    def _forward(self, batch: "torch.Tensor") -> np.ndarray:
        """One batch through the model; float16 autocast on GPU, with a float32 retry if it overflows."""
        import torch

        try:
            with _autocast(self.device):
                output = self.model(batch)[:, 0].float()
            if self.device.startswith("cuda") and not torch.isfinite(output).all():
                output = self.model(batch)[:, 0].float()
        except torch.cuda.OutOfMemoryError:
            raise InputError("--batch-size", f"out of GPU memory at batch size {self.batch_size}",
                             "use a smaller --batch-size") from None
        return output.clamp_(0.0, 1.0).cpu().numpy()

    def _title(self, subject: str | None, named: dict[str, VolumeSource]) -> str:
        name = subject or _subject_name(next(iter(named.values())))
        return f"{name}: {self.scenario} with {self.checkpoint.name}"


def synthesize(
    inputs: Mapping[str, VolumeSource],
    out: str | Path | None = None,
    model: str | Path | None = None,
    target: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    register: bool = False,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: Progress | None = None,
    match_intensity: VolumeSource | None = None,
    tta: bool = False,
    mask: VolumeSource | None = None,
    skull_strip: bool = False,
    n4: bool = False,
) -> SynthesisResult:
    """Synthesize one subject; ``inputs`` maps contrasts to files or images, the first one being the reference grid.

    ``model`` is a ``.safetensors`` path, a registry name, ``hf://OWNER/REPO[/FILE][@REV]`` or None (the
    registry's default model for these inputs, ``target`` choosing among several). ``match_intensity`` is a scan of
    the target contrast whose intensities the output takes (see :meth:`Synthesizer.__call__`). Without ``target``,
    an output name that announces a contrast (``pd.nii.gz``, :func:`output_target`) chooses it. ``tta``: average
    the model's output on each slice and on its left-right mirror (:func:`mirrored_mean`), at twice the cost.
    ``mask``, ``skull_strip`` and ``n4``: the raw-scan stages (see :meth:`Synthesizer.__call__`).
    """
    names = [_canonical_or_fail(name, f"--{name}") for name in inputs]
    target = output_target(out, target, names)
    synthesizer = Synthesizer.from_spec(model, names, target, device=device, batch_size=batch_size, tta=tta)
    return synthesizer(inputs, out, register=register, overwrite=overwrite, preview=preview, progress=progress,
                       match_intensity=match_intensity, mask=mask, skull_strip=skull_strip, n4=n4)


@dataclass
class BatchItem:
    """One subject's outcome in batch mode: a result, or the reason it failed or was skipped."""

    subject: Subject
    status: str  # "ok", "failed" or "skipped"
    result: SynthesisResult | None = None
    target: str | None = None
    error: str | None = None
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result.record()
        return {"subject": self.subject.name, "status": self.status, "output": _str(self.subject.output),
                "target": self.target,
                "inputs": {c: str(p) for c, p in self.subject.inputs.items()}, "error": self.error,
                "seconds": round(self.seconds, 3)}


def synthesize_batch(
    synthesizer: Synthesizer,
    subjects: list[Subject],
    *,
    register: bool = False,
    overwrite: bool = False,
    preview_dir: Path | None = None,
    match_intensity: VolumeSource | None = None,
    skull_strip: bool = False,
    n4: bool = False,
) -> Iterator[BatchItem]:
    """Synthesize subject after subject with one loaded model; a failing subject is reported, never fatal.

    An output that already exists (without ``overwrite``) is skipped, so an interrupted batch resumes where it
    stopped. Only the contrasts the model takes are used (a dataset folder may hold the target itself); the first
    of them in the subject's order (CSV column order) is its reference grid. ``match_intensity`` (one scan for all
    subjects) is read once, before the first subject: a bad file stops the batch with an InputError. A subject's
    ``mask`` (the CSV's ``mask`` column) is its brain mask; ``skull_strip`` and ``n4`` apply to every subject. The
    T1 is read for ``skull_strip`` even when the model does not take it.
    """
    intensity_reference = _intensity_reference(match_intensity)
    outcome = functools.partial(BatchItem, target=synthesizer.target)
    for subject in subjects:
        started = time.perf_counter()
        if subject.output is None:
            raise ValueError(f"subject {subject.name} has no output path")
        if subject.output.exists() and not overwrite:
            yield outcome(subject, "skipped", error="output exists (pass --overwrite to redo it)")
            continue
        missing = [c for c in synthesizer.inputs if c not in subject.inputs]
        if missing:
            yield outcome(subject, "failed", error=f"{subject.name}: no {', '.join(missing)} scan given or found "
                                                   f"(the model {synthesizer.scenario} needs it)")
            continue
        try:  # CSV outputs may point into folders that do not exist yet, as --out-dir may
            subject.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            yield outcome(subject, "failed", error=f"{subject.output.parent}: cannot create the output folder "
                                                   f"({exc.strerror})")
            continue
        ordered = {c: path for c, path in subject.inputs.items() if c in synthesizer.inputs}
        if skull_strip and "t1" in subject.inputs:  # last: deepbet's input, never the reference grid unless used
            ordered.setdefault("t1", subject.inputs["t1"])
        preview = preview_dir / f"{subject.output.name.split('.')[0]}.png" if preview_dir else None
        try:
            result = synthesizer(ordered, subject.output, subject=subject.name, register=register,
                                 overwrite=overwrite, preview=preview, match_intensity=intensity_reference,
                                 mask=subject.mask, skull_strip=skull_strip, n4=n4)
        except InputError as exc:
            yield outcome(subject, "failed", error=exc.one_line(), seconds=time.perf_counter() - started)
        except Exception as exc:  # isolation: one subject's unexpected failure must not stop the others
            yield outcome(subject, "failed", error=f"{type(exc).__name__}: {exc}",
                          seconds=time.perf_counter() - started)
        else:
            yield outcome(subject, "ok", result=result, seconds=result.seconds)


def output_target(out: str | Path | None, target: str | None, inputs: list[str]) -> str | None:
    """The contrast to synthesize: ``target`` when given, else the one the output's name announces
    (:func:`mrsynth.contrasts.contrast_from_filename`), else None (the registry default for the inputs).

    ``--out pd.nii.gz`` therefore writes PD, never the FLAIR that happens to be the default for t1 + t2; a name that
    contradicts ``--target``, or that names one of the inputs, is refused rather than guessed around.
    """
    named = contrast_from_filename(out) if out is not None else None
    if target is not None:
        target = _canonical_or_fail(target, "--target")
        if named is not None and named != target:
            raise InputError(out, f"the output name says {named} but --target is {target}",
                             "rename the output or drop --target")
        return target
    if named is not None and named in inputs:
        raise InputError(out, f"the output name says {named}, which is one of the inputs",
                         "rename the output (e.g. ...-flair.nii.gz) or give --target")
    return named


def input_mixups(volumes: Mapping[str, "sitk.Image"], labels: Mapping[str, str],
                 skull_stripped: bool | None) -> list[str]:
    """Two mix-ups that give a plausible-looking but wrong synthesis: two inputs with identical voxels (one file
    copied under two names) is refused; a T1 and a T2 that look swapped earns a warning.

    The swap test uses what distinguishes the two weightings in brain tissue, normalised by each scan's 99th
    percentile: T1 is bright with a dark CSF tail (median of 0.64-0.82, negative skew on the 17 BraTS training
    subjects), T2 dark with a bright CSF tail (median 0.27-0.50, skew +0.6 to +2.5). Both statistics must point
    the other way before anything is said. Scans with skull and scalp do not follow these figures (two raw
    clinical T1s had skew +0.9 and +2.1), so the test runs only for models trained on skull-stripped scans.
    """
    import SimpleITK as sitk

    arrays = {c: sitk.GetArrayViewFromImage(image) for c, image in volumes.items()}
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if arrays[a].shape == arrays[b].shape and np.array_equal(arrays[a], arrays[b]):
                raise InputError(labels[b], f"has exactly the voxels of {labels[a]} (--{a} and --{b})",
                                 "give each contrast its own scan")
    if not skull_stripped or not {"t1", "t2"} <= set(arrays):
        return []
    t1, t2 = (_tissue_statistics(arrays[c]) for c in ("t1", "t2"))
    if t1[0] < t2[0] and t1[1] > t2[1]:
        return [f"{labels['t1']} (--t1) looks T2-weighted and {labels['t2']} (--t2) T1-weighted (median "
                f"{t1[0]:.2f} vs {t2[0]:.2f}, skew {t1[1]:+.2f} vs {t2[1]:+.2f}); are --t1 and --t2 swapped?"]
    return []


def _tissue_statistics(values: np.ndarray) -> tuple[float, float]:
    """(median, skewness) of the brain voxels (above 10 % of the 99th percentile), scaled by that percentile."""
    positive = values[values > 0]
    if positive.size < 100:
        return 0.0, 0.0
    p99 = float(np.percentile(positive, 99))
    tissue = np.clip(positive[positive > 0.1 * p99] / p99, 0.0, 1.5)
    centred = tissue - tissue.mean()
    spread = float(np.sqrt(np.mean(centred ** 2))) or 1.0
    return float(np.median(tissue)), float(np.mean(centred ** 3) / spread ** 3)


def training_mismatch(image: "sitk.Image", metadata: Mapping[str, Any], label: str,
                      check_skull: bool = True) -> list[str]:
    """Warnings (never refusals) for a scan that clearly differs from the model's training data.

    Voxel size: more than 30 % away from the checkpoint's ``voxel_size_mm`` along any anatomical axis. Skull: a
    skull-stripped adult brain, CSF included, holds under 2.2 L of non-zero voxels, a head with skull and scalp
    over 3 L (noisy background counts as non-zero, and is itself a sign of an unstripped scan); stripped scans
    also have at least 30 % exact-zero background. Between those bounds nothing is said. ``check_skull=False``
    (a brain mask is applied) leaves the skull test out.
    """
    import SimpleITK as sitk

    from mrsynth.io import to_canonical

    warnings = []
    trained = metadata.get("voxel_size_mm")
    if trained:
        spacing = np.asarray(to_canonical(image).GetSpacing(), dtype=float)
        expected = np.asarray(trained, dtype=float)
        if np.any(np.abs(spacing - expected) > VOXEL_SIZE_TOLERANCE * expected):
            warnings.append(f"{label}: voxel size {_mm(spacing)} differs from the model's training voxel size "
                            f"{_mm(expected)}; results may degrade")
    stripped = metadata.get("skull_stripped") if check_skull else None
    if stripped is not None:
        values = sitk.GetArrayViewFromImage(image)
        litres = float(np.count_nonzero(values > 0)) * math.prod(image.GetSpacing()) / 1e6
        background = float(np.mean(values == 0))
        if stripped and litres > HEAD_MIN_LITRES:
            warnings.append(f"{label}: looks like it still has the skull ({litres:.1f} L of non-zero voxels) but the "
                            "model was trained on skull-stripped scans; pass --skull-strip (deepbet) or --mask FILE "
                            "(e.g. from HD-BET or SynthStrip)")
        elif not stripped and litres < STRIPPED_MAX_LITRES and background > STRIPPED_MIN_BACKGROUND:
            warnings.append(f"{label}: looks skull-stripped ({litres:.1f} L of non-zero voxels) but the model was "
                            "trained on scans with the skull")
    return warnings


def resolve_checkpoint(model: str | Path | None, available: list[str], target: str | None = None) -> Path:
    """The verified checkpoint file for ``--model``, or without one the registry's default for the contrasts
    ``available`` (the target, when it is among them, is not an input); see :func:`mrsynth.hub.resolve_model`."""
    from mrsynth.hub import resolve_model

    return resolve_model(None if model is None else str(model), [c for c in available if c != target], target)


def mirrored_mean(forward: Callable[["torch.Tensor"], np.ndarray], batch: "torch.Tensor") -> np.ndarray:
    """Test-time augmentation: the mean of ``forward`` on (B, C, Y, X) slices and on their left-right mirror
    images, mirrored back. Left-right only, because that is the flip training draws (the last axis,
    :mod:`mrsynth.training.augment`): the model has learnt both orientations, and averaging them cancels part of
    its error; an up-down mirror is a view it never saw (docs/training.md measures both)."""
    return 0.5 * (forward(batch) + forward(batch.flip(-1))[..., ::-1])


@dataclass(frozen=True)
class SliceWindow:
    """Where the model's slice_size window sits in a slice: padding where the slice is smaller, a crop around the
    signal where it is larger (the cropped margins hold no signal in any slice, so their output is background).
    A slice whose signal does not fit keeps its full size: the network is fully convolutional."""

    starts: tuple[int, int]
    lengths: tuple[int, int]
    shape: tuple[int, int]

    @classmethod
    def fit(cls, stack: np.ndarray, size: tuple[int, ...]) -> "SliceWindow":
        shape = (int(stack.shape[2]), int(stack.shape[3]))
        if len(size) != 2 or min(size) < 1:
            return cls((0, 0), shape, shape)
        signal = stack.any(axis=(0, 1))
        starts, lengths = [], []
        for axis, (n, m) in enumerate(zip(shape, size)):
            if n <= m:
                starts.append(-((m - n) // 2))
                lengths.append(m)
                continue
            hits = np.flatnonzero(signal.any(axis=1 - axis))
            low, high = (int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, n)
            if high - low > m:
                starts.append(0)
                lengths.append(n)
            else:
                starts.append(min(max((low + high - m) // 2, 0), n - m))
                lengths.append(m)
        return cls((starts[0], starts[1]), (lengths[0], lengths[1]), shape)

    def _spans(self) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """(source region in the slice, destination region in the window), both clipped to what overlaps."""
        source, destination = [], []
        for start, length, n in zip(self.starts, self.lengths, self.shape):
            low, high = max(start, 0), min(start + length, n)
            source.append(slice(low, high))
            destination.append(slice(low - start, high - start))
        return (source[0], source[1]), (destination[0], destination[1])

    def cut(self, slices: np.ndarray) -> np.ndarray:
        """(B, C, Y, X) slices -> (B, C, *lengths) windows, zero where the window reaches past the slice."""
        (sy, sx), (dy, dx) = self._spans()
        if (sy, sx) == (dy, dx) and slices.shape[2:] == self.lengths:
            return np.ascontiguousarray(slices)
        windows = np.zeros((*slices.shape[:2], *self.lengths), dtype=np.float32)
        windows[:, :, dy, dx] = slices[:, :, sy, sx]
        return windows

    def paste(self, windows: np.ndarray, volume: np.ndarray, index: np.ndarray) -> None:
        """Write (B, *lengths) model outputs back into ``volume[index]`` (Z, Y, X)."""
        (sy, sx), (dy, dx) = self._spans()
        volume[index, sy, sx] = windows[:, dy, dx]


@contextlib.contextmanager
def _autocast(device: str) -> Iterator[None]:
    if device.startswith("cuda"):
        import torch

        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield


def _canonical_or_fail(name: str, label: str) -> str:
    contrast = canonical_contrast(name)
    if contrast is None:
        raise InputError(label, f"unknown contrast {name!r}", f"use one of {', '.join(CONTRASTS)}")
    return contrast


def _intensity_reference(source: Union[VolumeSource, "IntensityReference", None]) -> "IntensityReference | None":
    """``--match-intensity`` read once (an already read reference passes through), labelled like the inputs."""
    from mrsynth.intensity import IntensityReference, read_intensity_reference

    if source is None or isinstance(source, IntensityReference):
        return source
    return read_intensity_reference(source, _describe(source))


def _describe(source: VolumeSource) -> str:
    return str(source) if isinstance(source, (str, Path)) else "<in-memory image>"


def _subject_name(source: VolumeSource) -> str:
    if not isinstance(source, (str, Path)):
        return "subject"
    name = Path(source).name
    return name.split(".")[0]


def _mm(values: Any) -> str:
    return "x".join(f"{v:g}" for v in np.round(np.asarray(values, dtype=float), 2)) + " mm"


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
