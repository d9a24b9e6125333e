"""The synthesis API: a checkpoint loaded once (:class:`Synthesizer`), one call per subject (:func:`synthesize`).

The model is 2-D, so a volume is cut into axial slices. "Axial" must mean anatomy, not the order voxels happen to
be stored in, so every input is first put on the reference grid and into one canonical voxel order before slicing;
the synthesis goes back the same way and is written with the reference's own header. Those stages are the small
modules of :mod:`mrsynth.pipeline`, run in order by :func:`mrsynth.pipeline.run.run_pipeline`; this module only
chooses and loads the model, and the result lists the stages that ran.

Library use (a notebook)::

    from mrsynth.inference import Synthesizer
    synth = Synthesizer.from_spec("weights/model.safetensors", inputs=["t1", "t2"])
    result = synth({"t1": "a-t1n.nii.gz", "t2": "a-t2w.nii.gz"}, out="a-flair.nii.gz")
    result.image  # SimpleITK image on the T1 grid, values in the target's normalised [0, 1] scale
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mrsynth.contrasts import contrast_from_filename
from mrsynth.devices import resolve_device
from mrsynth.errors import InputError
from mrsynth.pipeline.model import Progress
from mrsynth.pipeline.request import VolumeSource, canonical_or_fail
from mrsynth.pipeline.result import SynthesisResult
from mrsynth.pipeline.run import run_pipeline

if TYPE_CHECKING:
    import torch


DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32}
"""CPU: large enough that oneDNN convolutions run at full speed, small enough for a paper-width model at 240x240
(about 0.3 GB of activations per slice) on a laptop. GPU: a paper-width model at batch 32 needs a few GB."""


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
        target = canonical_or_fail(target, "--target") if target else None
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

    __call__ = run_pipeline
    """``synth(inputs, out, ...)``: one subject through :func:`mrsynth.pipeline.run.run_pipeline`, this loaded model
    being its ``model`` argument (the pipeline documents the options)."""


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
    the target contrast whose intensities the output takes (see :func:`mrsynth.pipeline.run.run_pipeline`). Without ``target``,
    an output name that announces a contrast (``pd.nii.gz``, :func:`output_target`) chooses it. ``tta``: average
    the model's output on each slice and on its left-right mirror (:func:`mrsynth.pipeline.model.mirrored_mean`),
    at twice the cost. ``mask``, ``skull_strip`` and ``n4``: the raw-scan stages (see :func:`mrsynth.pipeline.run.run_pipeline`).
    """
    names = [canonical_or_fail(name, f"--{name}") for name in inputs]
    target = output_target(out, target, names)
    synthesizer = Synthesizer.from_spec(model, names, target, device=device, batch_size=batch_size, tta=tta)
    return synthesizer(inputs, out, register=register, overwrite=overwrite, preview=preview, progress=progress,
                       match_intensity=match_intensity, mask=mask, skull_strip=skull_strip, n4=n4)


def output_target(out: str | Path | None, target: str | None, inputs: list[str]) -> str | None:
    """The contrast to synthesize: ``target`` when given, else the one the output's name announces
    (:func:`mrsynth.contrasts.contrast_from_filename`), else None (the registry default for the inputs).

    ``--out pd.nii.gz`` therefore writes PD, never the FLAIR that happens to be the default for t1 + t2; a name that
    contradicts ``--target``, or that names one of the inputs, is refused rather than guessed around.
    """
    named = contrast_from_filename(out) if out is not None else None
    if target is not None:
        target = canonical_or_fail(target, "--target")
        if named is not None and named != target:
            raise InputError(out, f"the output name says {named} but --target is {target}",
                             "rename the output or drop --target")
        return target
    if named is not None and named in inputs:
        raise InputError(out, f"the output name says {named}, which is one of the inputs",
                         "rename the output (e.g. ...-flair.nii.gz) or give --target")
    return named


def resolve_checkpoint(model: str | Path | None, available: list[str], target: str | None = None) -> Path:
    """The verified checkpoint file for ``--model``, or without one the registry's default for the contrasts
    ``available`` (the target, when it is among them, is not an input); see :func:`mrsynth.hub.resolve_model`."""
    from mrsynth.hub import resolve_model

    return resolve_model(None if model is None else str(model), [c for c in available if c != target], target)
