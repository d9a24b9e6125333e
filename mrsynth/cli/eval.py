"""``mrsynth eval``: the paper's tables (PSNR dB, SSIM %, MAE x100), misalignment curve and error-map figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from mrsynth.cli.common import emit_json, stderr_console, user_errors
from mrsynth.errors import InputError
from mrsynth.progress import progress_bar

DATASETS = ("ixi", "brats")


def _parse_roi(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[2]) < 2:
        raise InputError("--roi", f"{text!r} is not ROW:COL:SIZE", "e.g. --roi 90:60:64 (top-left corner and side in px)")
    y, x, size = (int(p) for p in parts)
    return y, x, size


@user_errors
def eval_command(
    data: Optional[Path] = typer.Option(None, "--data", help="Slice store made by mrsynth preprocess."),
    checkpoint: List[str] = typer.Option(
        [], "--checkpoint", "-c", help="Model: .safetensors, registry name or hf:// (repeat to compare)."
    ),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="ixi or brats: column order of Table 1 / 2."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    subject: List[str] = typer.Option([], "--subject", help="Evaluate only these subjects (repeatable)."),
    perturb_shift: Optional[str] = typer.Option(
        None, "--perturb-shift", help="Fig. 3 misalignment levels START:STOP:STEP in px, STOP included (0:3:0.5)."
    ),
    perturb_input: Optional[str] = typer.Option(None, "--perturb-input", help="Contrast to shift (default: last)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random shift directions."),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder for metrics.csv, summary.json and PNGs."),
    figure: List[str] = typer.Option([], "--figure", help="Slice to draw as SUBJECT:Z (repeatable)."),
    figures: int = typer.Option(2, "--figures", help="Without --figure: fullest slice of this many subjects."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Zoomed ROI ROW:COL:SIZE in pixels (default: around the "
                                      "largest error)."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="Prediction volume (NIfTI) to score against --truth."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Ground-truth volume (NIfTI), same grid as --pred."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Brain mask for slice selection (NIfTI pair mode)."),
    inputs: List[Path] = typer.Option([], "--input", help="Input volume: its non-zero voxels are brain (repeatable)."),
    normalize: str = typer.Option("none", "--normalize", help="NIfTI pairs: none, truth or both (99.5th pct)."),
    slices: Optional[str] = typer.Option(None, "--slices", help="NIfTI pair mode: axial range START:STOP, e.g. 45:"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Slices per forward pass."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing report files."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables."),
) -> None:
    """Score checkpoints on a slice store (or a prediction volume against its ground truth) with the paper's protocol.

    Per axial slice on the [0, 1] scale, over slices with >= 1 % brain: PSNR (dB), SSIM (%), MAE (x100).

    Examples:

      mrsynth eval --dataset brats --data store --split val   (every registered model the store can serve)

      mrsynth eval --data store --checkpoint agi.safetensors --checkpoint resunet.safetensors --report out

      mrsynth eval --data store -c agi.safetensors -c resunet.safetensors --perturb-shift 0:3:0.5 --json

      mrsynth eval --pred pd_pred.nii.gz --truth avg152PD.nii.gz --normalize truth --slices 45:
    """
    if dataset is not None and dataset not in DATASETS:
        raise InputError("--dataset", f"unknown dataset {dataset!r}", f"use {' or '.join(DATASETS)}")
    console = stderr_console(quiet)
    if pred is not None or truth is not None:
        if pred is None or truth is None or data is not None or checkpoint:
            raise InputError("--pred/--truth", "NIfTI pair mode needs both --pred and --truth",
                             "and no --data/--checkpoint")
        _eval_pair(pred, truth, mask, inputs, normalize, slices, report, overwrite, as_json, console)
        return
    if data is None:
        raise InputError("--data", "give a slice store (made by mrsynth preprocess)",
                         "or --pred/--truth for two volumes; see mrsynth eval --help")
    if not checkpoint:
        from mrsynth.evaluation import registered_models_for

        checkpoint = registered_models_for(data)
        console.print(f"no --checkpoint: scoring the {len(checkpoint)} registered model(s) this store can serve: "
                      f"{', '.join(checkpoint)}", highlight=False)
    _eval_store(data, checkpoint, dataset, split, subject, perturb_shift, perturb_input, seed, report, figure,
                figures, _parse_roi(roi), device, batch_size, overwrite, as_json, console)


def _eval_store(data: Path, checkpoints: List[str], dataset: Optional[str], split: str, subjects: List[str],
                perturb_shift: Optional[str], perturb_input: Optional[str], seed: int, report: Optional[Path],
                figure: List[str], figures: int, roi: Optional[tuple[int, int, int]], device: str, batch_size: int,
                overwrite: bool, as_json: bool, console: Any) -> None:

    from mrsynth.data.store import SliceStore
    from mrsynth.evaluation import evaluate_store, load_models, paired_tests, parse_levels, summary_record
    from mrsynth.evaluation.report import (CSV_NAME, PROTOCOL, SHIFT_PLOT_NAME, SUMMARY_NAME, check_picks,
                                           default_picks, json_safe, parse_pick, planned_files, prepare_report_dir,
                                           render_panels, write_json, write_metrics_csv)
    from mrsynth.evaluation.tables import paired_table, paper_table, shift_table
    from mrsynth.devices import resolve_device

    levels = parse_levels(perturb_shift) if perturb_shift else []
    store = SliceStore(data)
    recorded = store.manifest.get("dataset")
    recorded = recorded if recorded in DATASETS else None  # "folder" stores have no paper layout
    if dataset and recorded and recorded != dataset:
        raise InputError(data, f"store holds {recorded!r} data, not {dataset!r}", f"use --dataset {recorded}")
    dataset = dataset or recorded
    device = resolve_device(device)
    models = load_models(checkpoints, device)
    chosen = subjects or store.subjects(split)
    if not chosen:
        raise InputError(data, f"no finished subject in split {split!r}", "check --split or run mrsynth preprocess")
    picks = []
    if report is not None:
        picks = [parse_pick(f) for f in figure] or default_picks(store, models[0], chosen, figures)
        check_picks(store, picks)
        prepare_report_dir(report, planned_files(report, picks, bool(levels)), overwrite)

    with progress_bar(console) as progress:
        task = progress.add_task(f"evaluating {len(models)} model(s)", total=len(chosen))
        evaluation = evaluate_store(store, models, split, chosen, levels, perturb_input, seed, batch_size, device,
                                    on_subject=lambda _: progress.advance(task))

    sources = {m.label: {"checkpoint": m.source, "arch": m.metadata.get("model", {}).get("arch")} for m in models}
    main = [{**summary_record(evaluation.main(m.label)), **sources[m.label]} for m in models]
    shifted = [summary_record(r) for r in evaluation.results.values()] if evaluation.perturbed else []
    tests = paired_tests(evaluation)

    title = f"{data} ({split}, {main[0]['n_subjects']} subject(s))"
    title += f", layout of {dataset.upper()}" if dataset else ""
    console.print(paper_table(main, dataset, title, width=console.width))
    if tests:
        console.print(paired_table(tests))
    if shifted:
        console.print(shift_table(shifted, evaluation.perturb_input))
    if as_json:
        for record in main:
            emit_json(json_safe({"kind": "summary", "split": split, **record}))
        for record in tests:
            emit_json(json_safe({"kind": "paired_test", **record}))
        for record in shifted:
            emit_json(json_safe({"kind": "shift", "perturbed": evaluation.perturb_input, **record}))

    if report is not None:
        from mrsynth.evaluation.figures import save_figure, shift_figure

        summary = {"data": str(data), "split": split, "dataset": dataset, "protocol": PROTOCOL, "summaries": main,
                   "paired_tests": tests}
        if shifted:
            summary["shift"] = {"perturbed": evaluation.perturb_input, "levels": evaluation.levels, "seed": seed,
                                "summaries": shifted}
        write_metrics_csv(evaluation.results.values(), report / CSV_NAME, overwrite)
        write_json(summary, report / SUMMARY_NAME, overwrite)
        if shifted:
            save_figure(shift_figure(shifted, evaluation.perturb_input), report / SHIFT_PLOT_NAME, overwrite)
        render_panels(store, models, picks, report, overwrite, device, roi)
        if as_json:
            written = planned_files(report, picks, bool(shifted))
            emit_json({"kind": "report", "dir": str(report), "files": [str(p) for p in written]})
        console.print(f"report written to {report}")


def _eval_pair(pred: Path, truth: Path, mask: Optional[Path], inputs: List[Path], normalize: str,
               slices: Optional[str], report: Optional[Path], overwrite: bool, as_json: bool, console: Any) -> None:
    from mrsynth.evaluation import summary_record
    from mrsynth.evaluation.nifti import evaluate_pair, parse_slice_range
    from mrsynth.evaluation.report import (CSV_NAME, PROTOCOL, SUMMARY_NAME, json_safe, prepare_report_dir,
                                           write_json, write_metrics_csv)
    from mrsynth.evaluation.tables import paper_table

    files = [report / CSV_NAME, report / SUMMARY_NAME] if report is not None else []
    if report is not None:
        prepare_report_dir(report, files, overwrite)
    results, info = evaluate_pair(pred, truth, mask, inputs, normalize, parse_slice_range(slices))
    results.scenario = f"vs {truth.name}"
    record = {**summary_record(results), **info}
    console.print(paper_table([record], title=f"{pred.name} against {truth.name} ({record['n_slices']} slices)"))
    if as_json:
        emit_json(json_safe({"kind": "summary", **record}))
    if report is not None:
        write_metrics_csv([results], files[0], overwrite)
        write_json({"protocol": PROTOCOL, "summaries": [record]}, files[1], overwrite)
        console.print(f"report written to {report}")
