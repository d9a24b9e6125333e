"""Slice-wise evaluation of one or several checkpoints on the same slices, optionally under input misalignment.

Every model of a run sees the same subjects and, for a given scenario, the same slices (selected by the protocol's
brain rule on the *model inputs*, :func:`mrsynth.metrics.brain_slices`), so per-slice values can be paired across
models. Results are kept per slice (raw metric units) and summarised only when reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from mrsynth.errors import InputError
from mrsynth.evaluation.models import EvalModel, predict_subject
from mrsynth.evaluation.perturb import shift_channel, shift_vectors, slice_key
from mrsynth.metrics import METRICS, brain_slices, slice_metrics


@dataclass
class SliceResults:
    """Per-slice metrics (raw units: dB, fractions) of one model at one misalignment level."""

    model: str
    scenario: str
    shift: float  # translation of the perturbed input in px (0 = unperturbed)
    subjects: list[str] = field(default_factory=list)
    slice_index: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def extend(self, subject: str, indices: Sequence[int], values: dict[str, np.ndarray]) -> None:
        self.subjects.extend([subject] * len(indices))
        self.slice_index.extend(int(i) for i in indices)
        for name in METRICS:
            self.metrics[name].extend(float(v) for v in values[name])

    def keys(self) -> list[tuple[str, int]]:
        """(subject, axial index) of every slice, in order: equal keys mean pairable results."""
        return list(zip(self.subjects, self.slice_index))

    def values(self, metric: str) -> np.ndarray:
        return np.asarray(self.metrics[metric], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.slice_index)


@dataclass
class Evaluation:
    """All results of one run: one :class:`SliceResults` per (model, level); level 0.0 is the plain evaluation."""

    models: list[EvalModel]
    levels: list[float]  # always contains 0.0 first
    perturb_input: str | None
    split: str | None
    results: dict[tuple[str, float], SliceResults]

    def main(self, label: str) -> SliceResults:
        """The unperturbed results of one model (the paper's Tables 1-2)."""
        return self.results[(label, 0.0)]

    @property
    def perturbed(self) -> bool:
        return len(self.levels) > 1


def _channels(contrasts: Sequence[str], names: Sequence[str], source: Any) -> list[int]:
    missing = [n for n in names if n not in contrasts]
    if missing:
        raise InputError(source, f"no {', '.join(missing)} contrast here", f"it has {', '.join(contrasts)}")
    return [list(contrasts).index(n) for n in names]


def perturb_channel(models: Sequence[EvalModel], perturb_input: str | None) -> str:
    """The contrast to translate: the one asked for (every model must take it), else the first model's last input."""
    name = perturb_input or models[0].inputs[-1]
    for model in models:
        if name not in model.inputs:
            raise InputError("--perturb-input", f"{model.label} ({model.scenario}) has no {name} input",
                             f"choose one of {', '.join(model.inputs)}")
    return name


def evaluate_case(
    evaluation: Evaluation,
    subject: str,
    slices: np.ndarray,
    contrasts: Sequence[str],
    slice_indices: Sequence[int],
    seed: int = 0,
    batch_size: int = 16,
    device: str = "cpu",
    source: Any = None,
) -> None:
    """Evaluate every model of ``evaluation`` on one subject's (n, C, H, W) normalised slices, at every level.

    Models that take the same inputs share the slice selection and each level's perturbed inputs, which are
    built once per level (one level in memory at a time).
    """
    indices = np.asarray(slice_indices)
    groups: dict[tuple[str, ...], list[EvalModel]] = {}
    for model in evaluation.models:
        groups.setdefault(model.inputs, []).append(model)
    for names, models in groups.items():
        channels = _channels(contrasts, names, source)
        mask = brain_slices(slices[:, channels])
        if not mask.any():
            continue
        selected = np.asarray(slices[mask], dtype=np.float32)
        kept, keys = indices[mask], np.array([slice_key(subject, z) for z in indices[mask]])
        truths = {m.label: selected[:, _channels(contrasts, [m.target], source)[0]] for m in models}
        for level in evaluation.levels:
            inputs = selected[:, channels]
            if level:
                channel = names.index(evaluation.perturb_input)
                inputs = shift_channel(inputs, channel, shift_vectors(level, keys, seed))
            for model in models:
                pred = predict_subject(model, inputs, batch_size, device)
                evaluation.results[(model.label, level)].extend(subject, kept, slice_metrics(pred, truths[model.label]))


def new_evaluation(
    models: Sequence[EvalModel],
    levels: Sequence[float] = (),
    perturb_input: str | None = None,
    split: str | None = None,
) -> Evaluation:
    """An empty :class:`Evaluation`; level 0 is always included so the main table exists whatever the levels."""
    levels = [0.0] + [float(x) for x in levels if float(x) != 0.0]
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise InputError("--checkpoint", "two checkpoints have the same label", "give distinct files")
    perturbed = perturb_channel(models, perturb_input) if len(levels) > 1 else None
    results = {(m.label, lv): SliceResults(m.label, m.scenario, lv) for m in models for lv in levels}
    return Evaluation(list(models), levels, perturbed, split, results)


def evaluate_store(
    store: Any,
    models: Sequence[EvalModel],
    split: str | None = "test",
    subjects: Sequence[str] | None = None,
    levels: Sequence[float] = (),
    perturb_input: str | None = None,
    seed: int = 0,
    batch_size: int = 16,
    device: str = "cpu",
    on_subject: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate ``models`` on every subject of ``split`` in a :class:`mrsynth.data.store.SliceStore`."""
    chosen = list(subjects) if subjects else store.subjects(split)
    if not chosen:
        raise InputError(store.path, f"no finished subject in split {split!r}",
                         "check --split or run mrsynth preprocess")
    for model in models:
        _channels(store.contrasts, (*model.inputs, model.target), store.path)
    evaluation = new_evaluation(models, levels, perturb_input, split)
    for subject in chosen:
        evaluate_case(evaluation, subject, store.slices(subject), store.contrasts, store.slice_indices(subject),
                      seed, batch_size, device, store.path)
        if on_subject:
            on_subject(subject)
    return evaluation
