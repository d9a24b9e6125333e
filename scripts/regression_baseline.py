"""Per-voxel quadratic regression baseline on a slice store's validation slices (the data README's reference).

Why: a learned starter model is only worth bundling if it beats the best *voxel-wise* mapping fitted on the same
training slices; this scores that mapping on the validation slices with the protocol of ``mrsynth.metrics``.
The fit uses the brain voxels (any input non-zero) of the training slices; outside the brain the prediction is 0.

    python scripts/regression_baseline.py --data STORE --scenario t1,t2->flair \
        --slice-range 0:55,85:155 --val-split train --val-slice-range 62:78
"""

from __future__ import annotations

import argparse
import json

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


def main() -> None:
    from mrsynth.hub.registry import parse_scenario
    from mrsynth.metrics import slice_metrics, summarize
    from mrsynth.training.data import store_datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--slice-range")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--val-slice-range")
    args = parser.parse_args()
    inputs, target = parse_scenario(args.scenario)
    _, train_set, val_set = store_datasets(args.data, inputs, target, args.slice_range, args.val_split, args.val_slice_range)
    x, y = stack(train_set)
    brain = (x != 0).any(axis=1).ravel()
    coef, *_ = np.linalg.lstsq(features(x)[brain], y.ravel()[brain].astype(np.float64), rcond=None)
    xv, yv = stack(val_set)
    pred = (features(xv) @ coef).reshape(yv.shape[0], *yv.shape[2:])
    pred = np.clip(np.where((xv != 0).any(axis=1), pred, 0.0), 0.0, 1.0)
    summary = summarize(slice_metrics(pred, yv[:, 0]))
    print(json.dumps({"train_slices": len(train_set), "val_slices": len(val_set),
                      **{k: round(v["mean"], 3) for k, v in summary.items()}}))


if __name__ == "__main__":
    main()
