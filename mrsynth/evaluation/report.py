"""The ``--report DIR`` outputs: ``metrics.csv`` (one row per slice and level), ``summary.json`` and PNG figures.

All files are planned before any work (so an existing report is refused up front unless ``--overwrite``) and
written atomically, so an interrupted evaluation leaves either the old report or a complete new one per file.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from mrsynth.data.target_median import median_factor, target_median
from mrsynth.errors import InputError
from mrsynth.evaluation.engine import SliceResults
from mrsynth.evaluation.models import EvalModel, predict_slices
from mrsynth.io.atomic import atomic_output, check_output_path
from mrsynth.metrics import METRICS, REPORT_UNITS, brain_slices, to_report_units

CSV_NAME, SUMMARY_NAME, SHIFT_PLOT_NAME = "metrics.csv", "summary.json", "shift.png"
CSV_COLUMNS = ("model", "scenario", "subject", "slice", "shift_px", "psnr_db", "ssim_pct", "mae_x100")
PROTOCOL = {
    "scale": "normalised [0, 1]",
    "unit_of_evaluation": "axial 2-D slice, whole slice",
    "slices": "brain (non-zero voxels of any input) covers >= 1 % of the slice",
    "average": "mean over slices; subject_mean: mean over subjects of per-subject means; std with ddof=0",
    "ssim": "skimage.metrics.structural_similarity defaults: 7x7 uniform window, K1=0.01, K2=0.03, sample covariance",
    "units": {m: REPORT_UNITS[m] for m in METRICS},
}


@dataclass(frozen=True)
class FigurePick:
    """One slice to draw: subject and original axial index."""

    subject: str
    slice_index: int

    @property
    def filename(self) -> str:
        return f"fig5_{self.subject}_z{self.slice_index:03d}.png"


def parse_pick(text: str) -> FigurePick:
    """``SUBJECT:Z`` (Z the original axial index, as in metrics.csv's ``slice`` column)."""
    subject, _, index = text.rpartition(":")
    if not subject or not index.lstrip("-").isdigit():
        raise InputError("--figure", f"{text!r} is not SUBJECT:Z", "e.g. --figure BraTS-GLI-00001-000:80")
    return FigurePick(subject, int(index))


def default_picks(store: Any, model: EvalModel, subjects: Sequence[str], count: int) -> list[FigurePick]:
    """The slice with the most brain of each of the first ``count`` subjects: a representative mid-brain slice."""
    picks = []
    channels = [store.channel(c) for c in model.inputs]
    for subject in list(subjects)[:count]:
        inputs = store.slices(subject)[:, channels]
        area = (np.asarray(inputs) != 0).any(axis=1).mean(axis=(1, 2))
        picks.append(FigurePick(subject, store.slice_indices(subject)[int(np.argmax(area))]))
    return picks


def check_picks(store: Any, picks: Sequence[FigurePick]) -> None:
    """Refuse a ``--figure`` slice the store does not hold before the (long) evaluation starts."""
    for pick in picks:
        indices = store.slice_indices(pick.subject)
        if pick.slice_index not in indices:
            raise InputError("--figure", f"{pick.subject} has no stored slice {pick.slice_index}",
                             f"stored slices are {indices[0]}..{indices[-1]}")


def planned_files(report_dir: Path, picks: Sequence[FigurePick], perturbed: bool) -> list[Path]:
    names = [CSV_NAME, SUMMARY_NAME] + ([SHIFT_PLOT_NAME] if perturbed else []) + [p.filename for p in picks]
    return [report_dir / name for name in names]


def prepare_report_dir(report_dir: str | Path, files: Sequence[Path], overwrite: bool) -> Path:
    """Create the folder and refuse, before any work, to replace existing report files without ``overwrite``."""
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise InputError(report_dir, "report path exists and is not a folder", "choose another --report")
    report_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        check_output_path(path, overwrite)
    return report_dir


def slice_rows(results_list: Iterable[SliceResults]) -> Iterator[tuple[Any, ...]]:
    """Rows of metrics.csv in reporting units (column names carry the unit)."""
    for results in results_list:
        columns = [to_report_units(m, results.values(m)) for m in METRICS]
        for i, (subject, index) in enumerate(results.keys()):
            yield (results.model, results.scenario, subject, index, results.shift,
                   *(f"{float(col[i]):.6f}" for col in columns))


def write_metrics_csv(results_list: Iterable[SliceResults], path: str | Path, overwrite: bool = False) -> Path:
    """One row per (model, level, slice): ``Evaluation.results.values()`` or a NIfTI pair's results."""
    with atomic_output(path, overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(slice_rows(results_list))
    return Path(path)


def json_safe(value: Any) -> Any:
    """JSON has no inf/NaN: write them as null so any parser (jq included) reads the output."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_json(data: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=1) + "\n", encoding="utf-8")
    return Path(path)


def render_panels(
    store: Any,
    models: Sequence[EvalModel],
    picks: Sequence[FigurePick],
    report_dir: Path,
    overwrite: bool = False,
    device: str = "cpu",
    roi: tuple[int, int, int] | None = None,
) -> list[Path]:
    """One Fig. 5 panel per pick with the first model's inputs and target, and every model with that target."""
    from mrsynth.evaluation.figures import panel_figure, save_figure
    from mrsynth.metrics import psnr, ssim

    reference = models[0]
    shown = [m for m in models if m.target == reference.target]
    written = []
    check_picks(store, picks)
    for pick in picks:
        indices = store.slice_indices(pick.subject)
        stack = np.asarray(store.slices(pick.subject)[indices.index(pick.slice_index)], dtype=np.float32)
        truth = stack[store.channel(reference.target)]
        inputs = {c: stack[store.channel(c)] for c in reference.inputs}
        preds = {}
        for model in shown:
            pred = panel_prediction(store, model, pick, stack, device)
            score = f"{psnr(pred, truth):.2f} dB, {to_report_units('ssim', ssim(pred, truth)):.2f} %"
            preds[f"{model.label} ({score})"] = pred
        brain = bool(brain_slices(stack[[store.channel(c) for c in reference.inputs]][None])[0])
        title = f"{pick.subject}, axial slice {pick.slice_index}: {reference.scenario}"
        title += "" if brain else " (< 1 % brain: not in the metrics)"
        figure = panel_figure(inputs, truth, preds, roi, title)
        written.append(save_figure(figure, report_dir / pick.filename, overwrite))
    return written


def panel_prediction(store: Any, model: EvalModel, pick: FigurePick, stack: np.ndarray, device: str) -> np.ndarray:
    """The model's synthesis of the picked slice (``stack``: its (C, H, W) contrasts), as the metrics score it: for
    a checkpoint with a ``target_median``, scaled by the factor of the subject's scored slices."""
    channels = [store.channel(c) for c in model.inputs]
    pred = predict_slices(model.model, stack[channels][None], 1, device)[0]
    median = target_median(model.metadata)
    if median is None:
        return pred
    slices = np.asarray(store.slices(pick.subject)[:, channels], dtype=np.float32)
    scored = slices[brain_slices(slices)]
    factor = median_factor(predict_slices(model.model, scored, 16, device), scored, median)
    return np.clip(pred * np.float32(factor), 0.0, 1.0)
