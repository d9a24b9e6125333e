"""Batch mode: the pipeline subject after subject with one loaded model.

Why a loop of its own: a batch must survive its subjects. A subject whose output exists is skipped (an interrupted
batch resumes where it stopped), one that lacks a scan or fails is reported and the next one runs; every subject
goes through the same :func:`mrsynth.pipeline.run.run_pipeline` as a single synthesis.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrsynth.errors import InputError
from mrsynth.io.subjects import Subject
from mrsynth.pipeline.read import intensity_reference
from mrsynth.pipeline.request import VolumeSource
from mrsynth.pipeline.result import SynthesisResult, path_text
from mrsynth.pipeline.run import LoadedModel, run_pipeline


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
        """The JSON line of ``--json``: the result's, or the subject, its inputs and why it has none."""
        if self.result is not None:
            return self.result.record()
        return {"subject": self.subject.name, "status": self.status, "output": path_text(self.subject.output),
                "target": self.target,
                "inputs": {c: str(p) for c, p in self.subject.inputs.items()}, "error": self.error,
                "seconds": round(self.seconds, 3)}


def synthesize_batch(
    model: LoadedModel,
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

    Only the contrasts the model takes are used (a dataset folder may hold the target itself); the first of them in
    the subject's order (CSV column order) is its reference grid. ``match_intensity`` (one scan for all subjects)
    is read once, before the first subject: a bad file stops the batch with an InputError. A subject's ``mask``
    is its brain mask; ``skull_strip`` and ``n4`` apply to every subject. The T1 is read for ``skull_strip`` even
    when the model does not take it.
    """
    matching = intensity_reference(match_intensity)
    outcome = functools.partial(BatchItem, target=model.target)
    for subject in subjects:
        started = time.perf_counter()
        if subject.output is None:
            raise ValueError(f"subject {subject.name} has no output path")
        if subject.output.exists() and not overwrite:
            yield outcome(subject, "skipped", error="output exists (pass --overwrite to redo it)")
            continue
        missing = [c for c in model.inputs if c not in subject.inputs]
        if missing:
            yield outcome(subject, "failed", error=f"{subject.name}: no {', '.join(missing)} scan given or found "
                                                   f"(the model {model.scenario} needs it)")
            continue
        try:  # CSV outputs may point into folders that do not exist yet, as --out-dir may
            subject.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            yield outcome(subject, "failed", error=f"{subject.output.parent}: cannot create the output folder "
                                                   f"({exc.strerror})")
            continue
        ordered = {c: path for c, path in subject.inputs.items() if c in model.inputs}
        if skull_strip and "t1" in subject.inputs:  # last: deepbet's input, never the reference grid unless used
            ordered.setdefault("t1", subject.inputs["t1"])
        preview = preview_dir / f"{subject.output.name.split('.')[0]}.png" if preview_dir else None
        try:
            result = run_pipeline(model, ordered, subject.output, subject=subject.name, register=register,
                                  overwrite=overwrite, preview=preview, match_intensity=matching,
                                  mask=subject.mask, skull_strip=skull_strip, n4=n4)
        except InputError as exc:
            yield outcome(subject, "failed", error=exc.one_line(), seconds=time.perf_counter() - started)
        except Exception as exc:  # isolation: one subject's unexpected failure must not stop the others
            yield outcome(subject, "failed", error=f"{type(exc).__name__}: {exc}",
                          seconds=time.perf_counter() - started)
        else:
            yield outcome(subject, "ok", result=result, seconds=result.seconds)
