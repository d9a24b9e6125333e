"""Per-voxel quadratic regression baseline for any scenario (the data README's reference), scored per subject.

Why: a learned model is only worth bundling if it beats the best *voxel-wise* mapping fitted on the same
training subjects; this fits that mapping (features 1, x_i, x_i x_j; numpy least squares on a seeded sample of
the brain voxels of the training slices) and scores it with the protocol of ``mrsynth.metrics`` on the
validation slices and, optionally, on other stores (a holdout). Outside the brain (no input non-zero) the
prediction is 0. One JSON line per evaluated split, with the slice mean and the per-subject means.

    python scripts/regression_baseline.py --data STORE --scenario 't1,t2->flair'
    python scripts/regression_baseline.py --data STORE --scenario 't1,t2->flair' --eval HOLDOUT_STORE:test
    python scripts/regression_baseline.py --data STORE --scenario 't1,t2->flair' \
        --slice-range 0:55,85:155 --val-split train --val-slice-range 62:78
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def features(x: np.ndarray) -> np.ndarray:
    """[1, a, b, a^2, b^2, ab, ...] for every voxel of an (N, C, H, W) stack -> (voxels, terms)."""
    channels = [x[:, c].ravel().astype(np.float64) for c in range(x.shape[1])]
    terms = [np.ones_like(channels[0]), *channels]
    for i in range(len(channels)):
        for j in range(i, len(channels)):
            terms.append(channels[i] * channels[j])
    return np.stack(terms, axis=1)


def stack(dataset) -> tuple[np.ndarray, np.ndarray]:
    items = [dataset[i] for i in range(len(dataset))]
    return np.stack([np.asarray(x) for x, _ in items]), np.stack([np.asarray(y) for _, y in items])


def fit(x: np.ndarray, y: np.ndarray, sample: float = 1.0, seed: int = 0) -> np.ndarray:
    """Least-squares coefficients on the brain voxels of (N, C, H, W) inputs; ``sample`` < 1 keeps that share."""
    brain = np.flatnonzero((x != 0).any(axis=1).ravel())
    if sample < 1:
        rng = np.random.default_rng(seed)
        brain = np.sort(rng.choice(brain, size=max(1, int(round(sample * brain.size))), replace=False))
    voxels = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])[brain]  # (V, C)
    design = features(voxels.T[None, :, :, None])  # as one (1, C, V, 1) "slice"
    coef, *_ = np.linalg.lstsq(design, y.ravel()[brain].astype(np.float64), rcond=None)
    return coef


def predict(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The fitted mapping on an (N, C, H, W) stack -> (N, H, W) in [0, 1], 0 outside the brain."""
    pred = (features(x) @ coef).reshape(x.shape[0], *x.shape[2:])
    return np.clip(np.where((x != 0).any(axis=1), pred, 0.0), 0.0, 1.0)


def subject_ids(dataset: Any) -> np.ndarray:
    """The subject of each item of a (possibly subset-wrapped) SliceDataset, in item order."""
    base = getattr(dataset, "dataset", dataset)
    positions = getattr(dataset, "indices", range(len(dataset)))
    return np.asarray([base.index[i][0] for i in positions])


def score(coef: np.ndarray, dataset: Any) -> dict[str, Any]:
    """Slice means over the dataset and per subject (report units: dB, %, x100)."""
    from mrsynth.metrics import slice_metrics, summarize

    x, y = stack(dataset)
    values = slice_metrics(predict(coef, x), y[:, 0])
    subjects = subject_ids(dataset)
    per_subject = {}
    for subject in sorted(set(subjects)):
        keep = subjects == subject
        part = summarize({k: v[keep] for k, v in values.items()})
        per_subject[subject] = {k: round(v["mean"], 3) for k, v in part.items()}
    return {"n_slices": int(len(y)), **{k: round(v["mean"], 3) for k, v in summarize(values).items()},
            "subjects": per_subject}


def main() -> None:
    from mrsynth.data.dataset import SliceDataset
    from mrsynth.data.store import SliceStore
    from mrsynth.hub.registry import parse_scenario
    from mrsynth.training.data import store_datasets, with_brain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="store whose train split is fitted")
    parser.add_argument("--scenario", required=True, help="inputs->target, e.g. t1,t2,flair->t1c")
    parser.add_argument("--slice-range")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--val-slice-range")
    parser.add_argument("--eval", action="append", default=[], metavar="STORE:SPLIT",
                        help="also score this store's split (repeatable), e.g. holdout_store:test")
    parser.add_argument("--sample", type=float, default=0.05, help="share of training brain voxels fitted (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    inputs, target = parse_scenario(args.scenario)
    _, train_set, val_set = store_datasets(args.data, inputs, target, args.slice_range, args.val_split, args.val_slice_range)
    coef = fit(*stack(train_set), sample=args.sample, seed=args.seed)
    common = {"scenario": args.scenario, "train_slices": len(train_set), "sample": args.sample}
    if val_set is not None:
        print(json.dumps({**common, "data": args.data, "split": args.val_split, **score(coef, val_set)}))
    for spec in args.eval:
        path, _, split = spec.rpartition(":")
        dataset = with_brain(SliceDataset(SliceStore(path), split, inputs, target), 0.01)
        print(json.dumps({**common, "data": path, "split": split, **score(coef, dataset)}))


if __name__ == "__main__":
    main()
