"""Summaries (mean ± std per slice and per subject) and paired tests between models on identical slices."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from mrsynth.evaluation.engine import Evaluation, SliceResults
from mrsynth.metrics import METRICS, summarize, to_report_units


def subject_means(results: SliceResults) -> dict[str, dict[str, float]]:
    """Per-subject mean of each metric, in reporting units (PSNR dB, SSIM %, MAE x100)."""
    subjects = np.asarray(results.subjects)
    out: dict[str, dict[str, float]] = {}
    for subject in dict.fromkeys(results.subjects):
        chosen = subjects == subject
        out[subject] = {m: summarize({m: results.values(m)[chosen]})[m]["mean"] for m in METRICS}
    return out


def summary_record(results: SliceResults) -> dict[str, Any]:
    """Mean ± std over slices (the protocol's average) and over subject means, in reporting units."""
    per_subject = subject_means(results)
    record: dict[str, Any] = {
        "model": results.model,
        "scenario": results.scenario,
        "shift_px": results.shift,
        "n_slices": len(results),
        "n_subjects": len(per_subject),
    }
    for name, stats in summarize({m: results.values(m) for m in METRICS}).items():
        record[name] = {"mean": stats["mean"], "std": stats["std"]}
        if stats["n_inf"]:
            record[name]["n_inf"] = stats["n_inf"]
        means = np.array([s[name] for s in per_subject.values()])
        record[name]["subject_mean"] = float(means.mean()) if means.size else float("nan")
        record[name]["subject_std"] = float(means.std()) if means.size else float("nan")
    return record


def paired_test(a: SliceResults, b: SliceResults) -> list[dict[str, Any]]:
    """Wilcoxon signed-rank test of the per-slice differences b - a, one record per metric (reporting units).

    Wilcoxon rather than a t-test: slice differences are skewed (near-empty edge slices) and not independent
    enough for a normal model to be trusted; the signed-rank test only assumes symmetric differences.
    """
    from scipy.stats import wilcoxon

    if a.keys() != b.keys():
        raise ValueError(f"{a.model} and {b.model} were evaluated on different slices; they cannot be paired")
    records = []
    for metric in METRICS:
        diff = to_report_units(metric, b.values(metric) - a.values(metric))
        diff = diff[np.isfinite(diff)]
        if diff.size and np.any(diff != 0):
            test = wilcoxon(diff)
            statistic, p_value = float(test.statistic), float(test.pvalue)
        else:  # identical predictions: no evidence of any difference
            statistic, p_value = float("nan"), 1.0
        records.append({
            "scenario": a.scenario, "a": a.model, "b": b.model, "shift_px": a.shift, "metric": metric,
            "n": int(diff.size), "mean_diff": float(diff.mean()) if diff.size else float("nan"),
            "median_diff": float(np.median(diff)) if diff.size else float("nan"),
            "statistic": statistic, "p_value": p_value,
        })
    return records


def paired_tests(evaluation: Evaluation) -> list[dict[str, Any]]:
    """Paired tests between every two models of the same scenario, on the unperturbed slices."""
    records: list[dict[str, Any]] = []
    for first, second in combinations(evaluation.models, 2):
        if first.scenario == second.scenario:
            records.extend(paired_test(evaluation.main(first.label), evaluation.main(second.label)))
    return records
