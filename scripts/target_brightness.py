"""How much of a model's validation error is the target's own brightness, which its inputs cannot tell.

Why: every volume is divided by its own 99.5th percentile (``../shared/spec/cagr.md``), so the grey level of a
tissue in the target depends on that subject's bright tail (vessels, enhancement, fat), not only on its inputs.
A synthesis can get every structure right and still lose several dB of PSNR to one wrong global factor. This
script measures both halves of that argument on a slice store, one JSON line per result:

- ``kind: "target"``: the median of each subject's non-zero target values, their spread over the training
  subjects, and how well a linear fit on the inputs' medians predicts it (leave one training subject out). A
  leave-one-out error as large as the spread means the inputs do not tell the target's brightness.
- ``kind: "subject"``: for each validation subject and each candidate (the per-voxel quadratic regression of
  ``regression_baseline.py`` and every ``--model``): slice-mean PSNR as ``mrsynth eval`` reports it, the one
  least-squares factor over the subject's brain voxels that best matches the target, and the PSNR after that
  factor (clipped to [0, 1]), and the same two for SSIM (%): what is left once brightness is taken out is the
  structure the candidate gets wrong. The factor uses the target, so the figures after it are a diagnosis, never
  a result. With it, the median of the candidate's own non-zero output: were factor x median the same for every
  subject, dividing the output by its own median would fix the brightness without the target (what a checkpoint
  with a ``target_median`` does, :mod:`mrsynth.data.target_median`; such a model is scored here as ``eval``
  scores it, standardised per subject).

    python scripts/target_brightness.py --data STORE --scenario 't2,flair->t1' --model resunet-tiny-brats17-t2flair-t1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from regression_baseline import fit, predict, stack, subject_ids  # noqa: E402


def best_factor(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> float:
    """The factor a minimising sum((a * pred - truth)^2) over the brain voxels."""
    p, t = pred[brain].astype(np.float64), truth[brain].astype(np.float64)
    denominator = float(p @ p)
    return float(p @ t) / denominator if denominator > 0 else 1.0


def leave_one_out_rmse(features: np.ndarray, target: np.ndarray) -> float:
    """RMSE of a linear fit (intercept + features) predicting each row from all the others."""
    design = np.column_stack([np.ones(len(target)), features])
    errors = []
    for i in range(len(target)):
        keep = np.arange(len(target)) != i
        beta, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        errors.append(float(design[i] @ beta - target[i]))
    return float(np.sqrt(np.mean(np.square(errors))))


def subject_medians(store: Any, contrasts: list[str]) -> dict[str, dict[str, float]]:
    """{subject: {contrast: median of its non-zero normalised values}} over every subject of the store."""
    medians = {}
    for subject in store.subjects():
        slices = store.slices(subject)
        medians[subject] = {}
        for name in contrasts:
            values = np.asarray(slices[:, store.channel(name)], dtype=np.float64)
            medians[subject][name] = float(np.median(values[values > 0]))
    return medians


def target_record(store: Any, inputs: list[str], target: str) -> dict[str, Any]:
    medians = subject_medians(store, [*inputs, target])
    train = [s for s in store.subjects() if store.split_of(s) == "train"]
    y = np.array([medians[s][target] for s in train])
    x = np.array([[medians[s][name] for name in inputs] for s in train])
    return {"kind": "target", "target": target, "train_subjects": len(train),
            "train_median_mean": round(float(y.mean()), 4), "train_median_sd": round(float(y.std()), 4),
            "loo_rmse_from_input_medians": round(leave_one_out_rmse(x, y), 4) if len(train) > len(inputs) + 1 else None,
            "medians": {s: round(medians[s][target], 4) for s in store.subjects()}}


def subject_records(val: Any, candidates: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    from mrsynth.metrics import slice_metrics

    subjects = subject_ids(val)
    records = []
    for subject in sorted(set(subjects)):
        keep = subjects == subject
        brain = (x[keep] != 0).any(axis=1)
        for label, pred in candidates.items():
            factor = best_factor(pred[keep], y[keep], brain)
            scaled = np.clip(pred[keep] * factor, 0.0, 1.0)
            output = pred[keep][pred[keep] > 0]
            scored, corrected = slice_metrics(pred[keep], y[keep]), slice_metrics(scaled, y[keep])
            records.append({"kind": "subject", "subject": subject, "candidate": label,
                            "psnr": round(float(scored["psnr"].mean()), 3),
                            "ssim": round(100 * float(scored["ssim"].mean()), 3),
                            "factor": round(factor, 4),
                            "output_median": round(float(np.median(output)), 4) if output.size else None,
                            "psnr_after_factor": round(float(corrected["psnr"].mean()), 3),
                            "ssim_after_factor": round(100 * float(corrected["ssim"].mean()), 3)})
    return records


def main(argv: list[str] | None = None) -> int:
    from mrsynth.errors import InputError

    try:
        return measure(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def measure(argv: list[str] | None) -> int:
    from mrsynth.hub.registry import parse_scenario
    from mrsynth.training.data import store_datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="slice store (its train split fits, its val split is scored)")
    parser.add_argument("--scenario", required=True, help="inputs->target, e.g. t2,flair->t1")
    parser.add_argument("--model", action="append", default=[], help="checkpoint or registry name (repeatable)")
    parser.add_argument("--sample", type=float, default=0.05, help="share of training brain voxels the regression fits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    inputs, target = parse_scenario(args.scenario)
    store, train, val = store_datasets(args.data, inputs, target)
    print(json.dumps({"scenario": args.scenario, **target_record(store, inputs, target)}), flush=True)
    if val is None:
        return 0
    x, y = stack(val)
    candidates = {"regression": predict(fit(*stack(train), sample=args.sample, seed=args.seed), x)}
    if args.model:
        from mrsynth.checkpoint import load_checkpoint
        from mrsynth.data.target_median import target_median, to_target_median_by_subject
        from mrsynth.evaluation.models import predict_slices
        from mrsynth.hub.resolve import resolve_model

        for spec in args.model:
            model, meta = load_checkpoint(resolve_model(spec))
            pred = predict_slices(model.eval(), x)
            median = target_median(meta)
            if median is not None:  # scored as eval scores it: standardised per subject
                pred = to_target_median_by_subject(pred, x, subject_ids(val), median)
            candidates[spec] = pred
    for record in subject_records(val, candidates, x, y[:, 0]):
        print(json.dumps({"scenario": args.scenario, **record}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
