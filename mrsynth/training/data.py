"""From a slice store to the trainer's datasets and the checkpoint metadata that describes the training data.

Kept apart from the loop so that the trainer takes any ``(x, y)`` Dataset (tests and notebooks use their own).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset, Subset

from mrsynth.checkpoint import default_normalization
from mrsynth.errors import InputError
from mrsynth.metrics import brain_slices


def parse_ranges(text: str | None, option: str = "--slice-range") -> list[tuple[int | None, int | None]]:
    """``"0:45"`` / ``"45:"`` / ``"0:60,90:155"`` -> half-open axial index ranges (Python slice style)."""
    if text is None or not text.strip():
        return []
    ranges: list[tuple[int | None, int | None]] = []
    for part in text.split(","):
        low, colon, high = part.strip().partition(":")
        try:
            if not colon:
                raise ValueError
            ranges.append((int(low) if low.strip() else None, int(high) if high.strip() else None))
        except ValueError:
            raise InputError(option, f"cannot read range {part.strip()!r}", "write START:STOP, e.g. 0:45 or 45: or 0:60,90:155") from None
    return ranges


def slice_filter(ranges: list[tuple[int | None, int | None]]) -> Callable[[str, int], bool] | None:
    """A ``SliceDataset`` filter keeping axial indices inside any of ``ranges`` (None: keep all)."""
    if not ranges:
        return None

    def keep(subject: str, axial: int) -> bool:
        return any((low is None or axial >= low) and (high is None or axial < high) for low, high in ranges)

    return keep


def with_brain(dataset: Any, min_fraction: float) -> Dataset:
    """Only the slices whose brain covers at least ``min_fraction`` (the evaluation protocol's 1 % rule).

    Empty slices teach nothing and would dilute small CPU batches; dropping them once up front costs one pass.
    """
    if min_fraction <= 0 or len(dataset) == 0:
        return dataset
    keep = [i for i in range(len(dataset)) if bool(brain_slices(dataset[i][0][None], min_fraction)[0])]
    return Subset(dataset, keep)


def store_datasets(
    store_path: str,
    inputs: list[str],
    target: str,
    train_ranges: str | None = None,
    val_split: str = "val",
    val_ranges: str | None = None,
    min_brain: float = 0.01,
    target_median: bool = False,
) -> tuple[Any, Any, Any]:
    """(store, train set, val set or None) for one scenario; val comes from ``val_split`` (optionally sliced).
    ``target_median``: every training subject's target scaled to the training subjects' mean median
    (:func:`mrsynth.data.target_median.training_target_scales`); validation targets stay as they are."""
    from mrsynth.data.dataset import SliceDataset
    from mrsynth.data.store import SliceStore
    from mrsynth.data.target_median import training_target_scales

    store = SliceStore(store_path)
    train_filter = slice_filter(parse_ranges(train_ranges))
    scales = training_target_scales(store, inputs, target) if target_median else None
    train_set = with_brain(SliceDataset(store, "train", inputs, target, train_filter, scales), min_brain)
    if len(train_set) == 0:
        raise InputError(store_path, "no training slices (empty train split or --slice-range)", "check the store's split")
    val_set = with_brain(SliceDataset(store, val_split, inputs, target, slice_filter(parse_ranges(val_ranges, "--val-slice-range"))), min_brain)
    return store, train_set, (val_set if len(val_set) else None)


def store_metadata(store: Any, inputs: list[str], target: str, train_ranges: str | None,
                   target_median: bool = False) -> dict[str, Any]:
    """Checkpoint metadata that the training data determines (scenario, normalisation, geometry, provenance, and
    with ``target_median`` the median its outputs are standardised to, :mod:`mrsynth.data.target_median`)."""
    manifest = store.manifest
    subjects = store.subjects("train")
    spacings = [entry.get("spacing") or entry.get("voxel_size_mm") for entry in manifest["subjects"].values()]
    spacings = [s for s in spacings if s]
    voxel = [float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0)] if spacings else None
    training: dict[str, Any] = {
        "data": manifest.get("dataset") or str(store.path),
        "subjects": subjects,
        "store": str(store.path),
    }
    if train_ranges:
        training["slice_range"] = train_ranges
    metadata = {
        "scenario": {"inputs": list(inputs), "target": target},
        "normalization": manifest.get("normalization", default_normalization()),
        "slice_size": list(store.slice_size),
        "voxel_size_mm": voxel,
        "skull_stripped": manifest.get("skull_stripped"),
        "training": training,
    }
    if target_median:
        from mrsynth.data.target_median import training_target_median

        metadata["target_median"] = training_target_median(store, inputs, target)
    return metadata
