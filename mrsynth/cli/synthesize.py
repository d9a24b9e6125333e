"""``mrsynth synthesize``: one subject (``--t1 A --t2 B --out C``) or many (``--batch LIST.csv`` / ``--input-dir``).

A thin layer over :mod:`mrsynth.inference`: it turns options into inputs, progress into a rich bar on stderr and
results into a summary table or JSON lines. Heavy imports happen inside the command so ``mrsynth --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mrsynth.cli.common import EXIT_OK, EXIT_PARTIAL, emit_json, stderr_console, user_errors
from mrsynth.errors import InputError
from mrsynth.progress import progress_bar

CONTRAST_OPTIONS = ("t1", "t1c", "t2", "pd", "flair")


@user_errors
def synthesize_command(
    ctx: typer.Context,
    t1: Optional[Path] = typer.Option(None, "--t1", help="T1-weighted scan (BraTS *-t1n, IXI *-T1).", metavar="FILE"),
    t1c: Optional[Path] = typer.Option(None, "--t1c", help="Post-contrast T1 scan (BraTS *-t1c).", metavar="FILE"),
    t2: Optional[Path] = typer.Option(None, "--t2", help="T2-weighted scan (BraTS *-t2w, IXI *-T2).", metavar="FILE"),
    pd: Optional[Path] = typer.Option(None, "--pd", help="Proton-density scan (IXI *-PD).", metavar="FILE"),
    flair: Optional[Path] = typer.Option(None, "--flair", help="FLAIR scan (BraTS *-t2f).", metavar="FILE"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output volume (.nii.gz, .nii, .mha, .nrrd).",
                                       metavar="FILE"),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="A .safetensors file, a registry name (mrsynth models) or hf://OWNER/REPO\\[/FILE]"
        "\\[@REV]; default: the registry's default model for the given inputs."),
    target: Optional[str] = typer.Option(None, "--target", help="Contrast to synthesize when several default models "
                                         "take the given inputs (t1, t1c, t2, pd, flair)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: cuda when available)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Slices per forward pass (default 8 on CPU, "
                                             "32 on GPU); lower it if memory runs out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (and previews)."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average the synthesis of each slice and "
                             "of its left-right mirror image (twice the time)."),
    register: bool = typer.Option(False, "--register", help="Rigidly register every input to the reference (first "
                                  "input) with mutual information instead of trusting the headers."),
    match_intensity: Optional[Path] = typer.Option(
        None, "--match-intensity", help="A scan of the target contrast (e.g. the same sequence from your scanner): "
        "the output takes its intensity distribution (histogram matching) instead of the normalised [0, 1] scale.",
        metavar="FILE"),
    preview: Optional[Path] = typer.Option(None, "--preview", help="Write a PNG of three orthogonal mid-slices of "
                                           "the inputs and the synthesis (batch mode: a folder for one PNG per "
                                           "subject).", metavar="PNG"),
    batch: Optional[Path] = typer.Option(None, "--batch", help="CSV with a 'subject' column, one column per "
                                         "contrast (t1, t2, t1n, ...) and an optional 'out' column.", metavar="LIST.csv"),
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", help="Folder of scans named BraTS-style "
                                             "(<case>-t1n.nii.gz), IXI-style (IXI002-Guys-0828-T1.nii.gz) or "
                                             "BIDS-like (sub-01_T1w.nii.gz).", metavar="DIR"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Batch mode: folder for <subject>-<target>.nii.gz "
                                           "outputs (created if missing).", metavar="DIR"),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per subject on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, tables or warnings on stderr."),
) -> None:
    """Synthesize a missing contrast on the grid of the first input given.

    Example: mrsynth synthesize --t1 examples/demo/TCGA-FG-6692-t1n.nii.gz
    --t2 examples/demo/TCGA-FG-6692-t2w.nii.gz --out flair.nii.gz --preview flair.png

    Batch: mrsynth synthesize --input-dir brats/ --out-dir synth/ --target flair --json
    """
    contrasts = {name: ctx.params[name] for name in ctx.params if name in CONTRAST_OPTIONS and ctx.params[name]}
    options = {"model": model, "target": target, "device": device, "batch_size": batch_size, "tta": tta,
               "overwrite": overwrite, "register": register, "match_intensity": match_intensity}
    if batch is not None or input_dir is not None:
        if contrasts or out is not None:
            raise InputError("--batch/--input-dir", "batch mode takes inputs from the list or folder",
                             "drop --t1/--t2/.../--out, or drop --batch/--input-dir")
        if batch is not None and input_dir is not None:
            raise InputError("--batch/--input-dir", "give one of --batch and --input-dir", "not both")
        code = _run_batch(batch, input_dir, out_dir, preview, options, as_json, quiet)
        raise typer.Exit(code)
    if not contrasts:
        raise InputError("--t1/--t2/...", "no input scans given", "e.g. --t1 T1.nii.gz --t2 T2.nii.gz --out OUT.nii.gz")
    if out is None:
        raise InputError("--out", "no output file given", "add --out OUT.nii.gz")
    if out_dir is not None:
        raise InputError("--out-dir", "is for batch mode", "use --out for one subject")
    _run_single(contrasts, out, preview, options, as_json, quiet)


def _run_single(contrasts: dict[str, Path], out: Path, preview: Optional[Path], options: dict[str, Any],
                as_json: bool, quiet: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from mrsynth.inference import Synthesizer

    console = stderr_console(quiet)
    synthesizer = Synthesizer.from_spec(options["model"], list(contrasts), options["target"],
                                        device=options["device"], batch_size=options["batch_size"],
                                        tta=options["tta"])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(console, *columns) as bar:
        task = bar.add_task(f"{synthesizer.scenario} on {synthesizer.device}", total=None)
        result = synthesizer(contrasts, out, register=options["register"], overwrite=options["overwrite"],
                             preview=preview, progress=lambda done, total: bar.update(task, completed=done, total=total),
                             match_intensity=options["match_intensity"])
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"wrote {result.output} ({result.scenario}, {result.slices} slices, {result.seconds:.1f} s on "
                  f"{result.device})" + (f" and {result.preview}" if result.preview else ""), highlight=False)
    if as_json:
        emit_json(result.record())


def _run_batch(batch: Optional[Path], input_dir: Optional[Path], out_dir: Optional[Path], preview: Optional[Path],
               options: dict[str, Any], as_json: bool, quiet: bool) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from mrsynth.inference import Synthesizer, synthesize_batch
    from mrsynth.io.subjects import find_subjects, read_subject_list

    console = stderr_console(quiet)
    subjects = read_subject_list(batch) if batch is not None else find_subjects(input_dir)  # type: ignore[arg-type]
    available = list(dict.fromkeys(c for s in subjects for c in s.inputs))
    synthesizer = Synthesizer.from_spec(options["model"], available, options["target"], device=options["device"],
                                        batch_size=options["batch_size"], tta=options["tta"])
    _assign_outputs(subjects, out_dir, synthesizer.target, batch or input_dir)  # type: ignore[arg-type]
    if preview is not None and not preview.is_dir():
        raise InputError(preview, "batch mode writes one preview per subject into a folder, which does not exist",
                         "create the folder first")
    items = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(console, *columns) as bar:
        task = bar.add_task(f"{synthesizer.scenario} on {synthesizer.device}", total=len(subjects))
        for item in synthesize_batch(synthesizer, subjects, register=options["register"],
                                     overwrite=options["overwrite"], preview_dir=preview,
                                     match_intensity=options["match_intensity"]):
            items.append(item)
            bar.advance(task)
            if as_json:
                emit_json(item.record())
    _print_summary(console, items)
    return EXIT_PARTIAL if any(item.status == "failed" for item in items) else EXIT_OK


def _assign_outputs(subjects: list[Any], out_dir: Optional[Path], target: str, source: Path) -> None:
    """``<out-dir>/<subject>-<target>.nii.gz`` for every subject without an ``out`` column; names must not clash."""
    if out_dir is None and any(s.output is None for s in subjects):
        raise InputError(source, "no output folder", "add --out-dir DIR (or an 'out' column to the CSV)")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(out_dir, f"cannot create the output folder ({exc.strerror})", "choose another --out-dir") from None
    seen: dict[Path, str] = {}
    for subject in subjects:
        if subject.output is None:
            subject.output = out_dir / f"{subject.name}-{target}.nii.gz"  # type: ignore[operator]
        if subject.output in seen:
            raise InputError(source, f"subjects {seen[subject.output]} and {subject.name} would both write "
                             f"{subject.output}", "give them distinct names or outputs")
        seen[subject.output] = subject.name


def _print_summary(console: Any, items: list[Any]) -> None:
    from rich.table import Table

    style = {"ok": "green", "skipped": "yellow", "failed": "red"}
    table = Table(title="mrsynth synthesize", title_justify="left")
    for column, justify in (("subject", "left"), ("status", "left"), ("output or error", "left"), ("s", "right")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for item in items:
        detail = str(item.subject.output) if item.status == "ok" else item.error or ""
        if item.result is not None and item.result.warnings:
            detail += f" ({len(item.result.warnings)} warning(s))"
        table.add_row(item.subject.name, f"[{style[item.status]}]{item.status}[/]", detail, f"{item.seconds:.1f}")
    console.print(table)
    for item in items:
        for warning in item.result.warnings if item.result is not None else []:
            console.print(f"[yellow]warning:[/] {item.subject.name}: {warning}", highlight=False)
    counts = {status: sum(item.status == status for item in items) for status in style}
    console.print(f"{counts['ok']} synthesized, {counts['skipped']} skipped (output exists), {counts['failed']} failed",
                  highlight=False)
