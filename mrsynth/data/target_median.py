"""Output median standardisation: a synthesized volume rescaled so its brain median is the training targets' mean.

Why: every volume is divided by its own 99.5th percentile (``shared/spec/cagr.md``), so how bright the brain is in
the target depends on that subject's bright tail, which no input shows. A network trained on a few subjects guesses
that brightness from cues that do not carry over; for T1 targets its guess was further off than the plain training
average (docs/training.md: the best global factor 0.81-1.38, against 0.65-0.77 for the factor times the output's own
median). A checkpoint whose metadata holds ``target_median`` therefore has each output volume multiplied by one
factor, ``target_median / median(output over the voxels where any input has signal)``, then clipped to [0, 1].
The structure inside the brain is the network's; only its global level is replaced by the training mean.
``synthesize`` applies it to the whole volume, ``eval`` to each subject's scored slices. ``mrsynth train
--target-median`` also trains on targets scaled to that median and validates standardised outputs.

Metadata form: ``"target_median": {"value": 0.677, "subjects": 14, "over": "voxels where any input is non-zero"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OVER = "voxels where any input is non-zero"


def target_median(metadata: dict[str, Any]) -> float | None:
    """The median a checkpoint's outputs are standardised to, or None where its metadata asks for none."""
    entry = metadata.get("target_median")
    return None if entry is None else float(entry["value"])


def median_factor(synthesis: np.ndarray, inputs: np.ndarray, median: float) -> float:
    """``median`` over the median of ``synthesis`` (N, Y, X) where any of ``inputs`` (N, C, Y, X) is non-zero;
    1.0 where the synthesis has no positive value there (nothing to rescale)."""
    inside = np.asarray(synthesis)[np.any(np.asarray(inputs) != 0, axis=1)]
    current = float(np.median(inside)) if inside.size else 0.0
    return median / current if current > 0 else 1.0


def to_target_median(synthesis: np.ndarray, inputs: np.ndarray, median: float) -> np.ndarray:
    """``synthesis`` multiplied by :func:`median_factor` and clipped to [0, 1], in place (float32 stays float32)."""
    synthesis *= np.float32(median_factor(synthesis, inputs, median))
    np.clip(synthesis, 0.0, 1.0, out=synthesis)
    return synthesis


def to_target_median_by_subject(synthesis: np.ndarray, inputs: np.ndarray, subjects: Sequence[str],
                                median: float) -> np.ndarray:
    """:func:`to_target_median` of each subject's slices on their own, in place, for a stack that holds several
    subjects' slices (``subjects``: the subject of each slice), as training's validation and the scripts hold them."""
    owner = np.asarray(subjects)
    for subject in dict.fromkeys(owner.tolist()):
        mine = owner == subject
        synthesis[mine] = to_target_median(synthesis[mine], inputs[mine], median)
    return synthesis


def subject_target_medians(store: Any, inputs: Sequence[str], target: str, split: str = "train") -> dict[str, float]:
    """{subject: the target's median over the voxels where any input is non-zero} for one split of ``store``
    (:class:`mrsynth.data.store.SliceStore`), the same voxels :func:`median_factor` reads."""
    channels = [store.channel(c) for c in inputs]
    medians = {}
    for subject in store.subjects(split):
        slices = store.slices(subject)
        inside = np.any(np.asarray(slices[:, channels]) != 0, axis=1)
        medians[subject] = float(np.median(np.asarray(slices[:, store.channel(target)], dtype=np.float64)[inside]))
    return medians


def training_target_median(store: Any, inputs: Sequence[str], target: str) -> dict[str, Any]:
    """The metadata entry for a model of ``inputs -> target`` trained on the train split of ``store``: the mean of
    :func:`subject_target_medians` over its training subjects."""
    return _entry(store, subject_target_medians(store, inputs, target))


def training_target_scales(store: Any, inputs: Sequence[str], target: str) -> dict[str, float]:
    """{training subject: c / its median}, c the entry's value: the factors that give every training target the
    same median, for training a model whose outputs will be standardised anyway (``mrsynth train
    --target-median``): the network is then not asked to guess a brightness the standardisation replaces."""
    medians = subject_target_medians(store, inputs, target)
    value = _entry(store, medians)["value"]
    return {s: value / m for s, m in medians.items() if m > 0}


def _entry(store: Any, medians: dict[str, float]) -> dict[str, Any]:
    if not medians:
        raise ValueError(f"{store.path}: no training subject to take the target median from")
    return {"value": round(float(np.mean(list(medians.values()))), 4), "subjects": len(medians), "over": OVER}
