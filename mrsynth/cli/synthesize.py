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
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output volume (.nii.gz, .nii, .mha, .nrrd). A name "
                                      "that ends in a contrast (pd.nii.gz, sub-01_FLAIR.nii.gz, case-t2f.nii.gz) "
                                      "chooses the target.", metavar="FILE"),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="A .safetensors file, a registry name (mrsynth models) or hf://OWNER/REPO\\[/FILE]"
        "\\[@REV]; default: the registry's default model for the given inputs."),
    target: Optional[str] = typer.Option(None, "--target", help="Contrast to synthesize (t1, t1c, t2, pd, flair); "
                                         "default: what the output name says, else the default model's target."),
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
    mask: Optional[Path] = typer.Option(None, "--mask", help="Brain mask of this subject (non-zero = brain; e.g. "
                                        "from HD-BET or SynthStrip), on any grid: resampled nearest-neighbour onto "
                                        "the reference; inputs and output are zeroed outside it. Batch mode: a "
                                        "'mask' column of the CSV, a <subject>*mask* file in --input-dir, a "
                                        "desc-brain_mask file in --bids.", metavar="FILE"),
    skull_strip: bool = typer.Option(False, "--skull-strip", help="Compute the brain mask on the T1 with deepbet "
                                     "(pip install \"mrsynth\\[bet]\"); inputs and output are zeroed outside it."),
    n4: bool = typer.Option(False, "--n4", help="N4 bias-field correction (SimpleITK) of every input before "
                            "normalisation."),
    preview: Optional[Path] = typer.Option(None, "--preview", help="Write a PNG of three orthogonal mid-slices of "
                                           "the inputs and the synthesis (batch mode: a folder for one PNG per "
                                           "subject).", metavar="PNG"),
    batch: Optional[Path] = typer.Option(None, "--batch", help="CSV with a 'subject' column, one column per "
                                         "contrast (t1, t2, t1n, ...), an optional 'out' column and an optional 'mask' "
                                         "column (brain masks).", metavar="LIST.csv"),
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", help="Folder of scans named BraTS-style "
                                             "(<case>-t1n.nii.gz), IXI-style (IXI002-Guys-0828-T1.nii.gz) or "
                                             "BIDS-like (sub-01_T1w.nii.gz).", metavar="DIR"),
    bids: Optional[Path] = typer.Option(None, "--bids", help="A BIDS dataset: every subject and session's T1w, "
                                        "ce-T1w, T2w, PDw and FLAIR; outputs are a BIDS derivative in --out-dir "
                                        "(desc-synth files, JSON sidecars, dataset_description.json).",
                                        metavar="DATASET"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Batch mode: folder for <subject>-<target>.nii.gz "
                                           "outputs (created if missing).", metavar="DIR"),
    shard: Optional[str] = typer.Option(None, "--shard", help="Batch mode: do only part I of N of the subject list "
                                        "(1/3, 2/3, 3/3: disjoint, together the whole list), e.g. "
                                        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.", metavar="I/N"),
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
               "overwrite": overwrite, "register": register, "match_intensity": match_intensity,
               "skull_strip": skull_strip, "n4": n4}
    from mrsynth.pipeline.brainmask import check_mask_options

    check_mask_options(mask is not None, skull_strip)  # before any model loads: a missing extra costs no work
    sources = {"--batch": batch, "--input-dir": input_dir, "--bids": bids}
    given = [option for option, value in sources.items() if value is not None]
    if given:
        if contrasts or out is not None:
            raise InputError(given[0], "batch mode takes inputs from the list or folder",
                             f"drop --t1/--t2/.../--out, or drop {given[0]}")
        if len(given) > 1:
            raise InputError("/".join(given), "give one of --batch, --input-dir and --bids", "not several")
        if mask is not None:
            raise InputError("--mask", "is one subject's mask", "in batch mode give a 'mask' column in the --batch "
                                                                "CSV, or one mask file per subject (docs/synthesize.md)")
        if bids is not None and out_dir is None:
            raise InputError("--bids", "needs --out-dir for the derivative dataset", "e.g. --out-dir DATASET/derivatives/mrsynth")
        code = _run_batch(sources, out_dir, preview, options, parse_shard(shard), as_json, quiet)
        raise typer.Exit(code)
    if shard is not None:
        raise InputError("--shard", "is for batch mode", "use it with --batch or --input-dir")
    if not contrasts:
        raise InputError("--t1/--t2/...", "no input scans given", "e.g. --t1 T1.nii.gz --t2 T2.nii.gz --out OUT.nii.gz")
    if out is None:
        raise InputError("--out", "no output file given", "add --out OUT.nii.gz")
    if out_dir is not None:
        raise InputError("--out-dir", "is for batch mode", "use --out for one subject")
    try:
        _run_single(contrasts, out, preview, mask, options, as_json, quiet)
    except InputError as exc:
        if as_json:  # a pipeline reading the JSON lines learns of the failure too, not only the terminal
            emit_json({"subject": None, "status": "failed", "output": out, "target": target, "error": exc.one_line()})
        raise


def _run_single(contrasts: dict[str, Path], out: str, preview: Optional[Path], mask: Optional[Path],
                options: dict[str, Any], as_json: bool, quiet: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from mrsynth.inference import Synthesizer, output_target
    from mrsynth.io.outputs import check_preview_output, check_volume_output

    console = stderr_console(quiet)
    check_volume_output(out, options["overwrite"])  # before the model loads: a bad --out costs no work
    if preview is not None:
        check_preview_output(preview, options["overwrite"])
    target = output_target(out, options["target"], list(contrasts))
    if mask is not None and not mask.exists():  # before the model loads, like --out
        raise InputError(mask, "file not found", "check the path")
    synthesizer = Synthesizer.from_spec(options["model"], list(contrasts), target, device=options["device"],
                                        batch_size=options["batch_size"], tta=options["tta"])
    if target is None and options["model"] is None:
        _note_default_target(console, synthesizer, list(contrasts))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(console, *columns) as bar:
        task = bar.add_task(f"{synthesizer.scenario} on {synthesizer.device}", total=None)
        result = synthesizer(contrasts, out, register=options["register"], overwrite=options["overwrite"],
                             preview=preview, progress=lambda done, total: bar.update(task, completed=done, total=total),
                             match_intensity=options["match_intensity"], mask=mask,
                             skull_strip=options["skull_strip"], n4=options["n4"])
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(f"wrote {result.output} ({result.scenario}, {result.slices} slices, {result.seconds:.1f} s on "
                  f"{result.device})" + (f" and {result.preview}" if result.preview else ""), highlight=False,
                  soft_wrap=True)
    if as_json:
        emit_json(result.record())


def _note_default_target(console: Any, synthesizer: Any, inputs: list[str]) -> None:
    """Neither --target nor the output name chose: say which target the default model makes, and what else could
    have been made from these inputs, so that a PD user never mistakes a FLAIR for a PD."""
    from mrsynth.hub import targets_for

    others = [t for t in targets_for(inputs) if t != synthesizer.target]
    if others:
        console.print(f"note: synthesizing {synthesizer.target} (the default for {','.join(inputs)}); for "
                      f"{' or '.join(others)} pass --target or name the output after it (e.g. {others[0]}.nii.gz)",
                      highlight=False, soft_wrap=True)


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``"2/3"`` -> (2, 3); one-based, as SLURM array task ids usually are."""
    if text is None:
        return None
    index, slash, count = text.partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise InputError("--shard", f"{text!r} is not I/N", "e.g. --shard 2/3")
    i, n = int(index), int(count)
    if n < 1 or not 1 <= i <= n:
        raise InputError("--shard", f"{text!r}: I must be between 1 and N", "e.g. --shard 1/3, 2/3 and 3/3")
    return i, n


def _run_batch(sources: dict[str, Optional[Path]], out_dir: Optional[Path], preview: Optional[Path],
               options: dict[str, Any], shard: Optional[tuple[int, int]], as_json: bool, quiet: bool) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from mrsynth.pipeline.batch import synthesize_batch
    from mrsynth.io.subjects import shard_subjects

    console = stderr_console(quiet)
    source = next(value for value in sources.values() if value is not None)
    subjects = _list_subjects(sources, console)
    listed = len(subjects)
    if shard is not None:
        subjects = shard_subjects(subjects, *shard)
    masked = next((s for s in subjects if s.mask is not None), None)
    if options["skull_strip"] and masked is not None:
        raise InputError(source, f"gives a brain mask (subject {masked.name}: {masked.mask}) and --skull-strip is "
                                 "given too", "drop the masks or --skull-strip")
    groups = _group_by_target(subjects, options)
    bids = sources["--bids"]
    if bids is not None:
        _assign_bids_outputs(bids, out_dir, groups)  # type: ignore[arg-type]
    else:
        _assign_outputs(subjects, out_dir, groups, source)
    if preview is not None and not preview.is_dir():
        raise InputError(preview, "batch mode writes one preview per subject into a folder, which does not exist",
                         "create the folder first")
    items = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress_bar(console, *columns) as bar:
        task = bar.add_task(", ".join(s.scenario for s, _ in groups.values()), total=len(subjects))
        for synthesizer, members in groups.values():
            checkpoint_sha256 = _checkpoint_sha256(synthesizer) if bids is not None else ""
            for item in synthesize_batch(synthesizer, members, register=options["register"],
                                         overwrite=options["overwrite"], preview_dir=preview,
                                         match_intensity=options["match_intensity"],
                                         skull_strip=options["skull_strip"], n4=options["n4"]):
                items.append(item)
                if bids is not None and item.status == "ok":
                    _write_bids_sidecar(item, bids, synthesizer, checkpoint_sha256)
                bar.advance(task)
                if as_json:
                    emit_json(item.record())
    _print_summary(console, items, shard, listed)
    return EXIT_PARTIAL if any(item.status == "failed" for item in items) else EXIT_OK


def _list_subjects(sources: dict[str, Optional[Path]], console: Any) -> list[Any]:
    from mrsynth.io.bids import find_bids_subjects
    from mrsynth.io.subjects import find_subjects, read_subject_list

    if sources["--batch"] is not None:
        return read_subject_list(sources["--batch"])
    if sources["--input-dir"] is not None:
        return find_subjects(sources["--input-dir"])
    subjects = find_bids_subjects(sources["--bids"])  # type: ignore[arg-type]
    for subject in subjects:
        for warning in subject.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    return subjects


def _assign_bids_outputs(dataset: Path, deriv: Path, groups: dict[Optional[str], tuple[Any, list[Any]]]) -> None:
    """BIDS derivative names (``sub-X[_ses-Y]_desc-synth_<suffix>``) and the derivative's dataset_description."""
    from mrsynth.io.bids import derivative_output, write_dataset_description

    write_dataset_description(deriv, dataset)
    for synthesizer, members in groups.values():
        for subject in members:
            subject.output = derivative_output(deriv, subject, synthesizer.target)


def _checkpoint_sha256(synthesizer: Any) -> str:
    """The loaded checkpoint's sha256, hashed once per model rather than once per subject's sidecar."""
    from mrsynth.hub import sha256_file

    return sha256_file(synthesizer.checkpoint)


def _write_bids_sidecar(item: Any, dataset: Path, synthesizer: Any, sha256: str) -> None:
    """The JSON sidecar of one written derivative: its sources as BIDS URIs, the model and its sha256."""
    from mrsynth.io.bids import write_sidecar

    write_sidecar(item.subject.output, item.subject, dataset, model=synthesizer.checkpoint.stem, sha256=sha256,
                  scenario=synthesizer.scenario)


def _group_by_target(subjects: list[Any], options: dict[str, Any]) -> dict[Optional[str], tuple[Any, list[Any]]]:
    """One loaded model per target: each subject's target is ``--target``, else what its CSV output's name says,
    else the default's; subjects keep their list order within a target."""
    from mrsynth.inference import Synthesizer, output_target

    available = list(dict.fromkeys(c for s in subjects for c in s.inputs))
    groups: dict[Optional[str], tuple[Any, list[Any]]] = {}
    for subject in subjects:
        target = output_target(subject.output, options["target"], list(subject.inputs)) if subject.output \
            else options["target"]
        if target not in groups:
            synthesizer = Synthesizer.from_spec(options["model"], available, target, device=options["device"],
                                                batch_size=options["batch_size"], tta=options["tta"])
            groups[target] = (synthesizer, [])
        groups[target][1].append(subject)
    return groups


def _assign_outputs(subjects: list[Any], out_dir: Optional[Path], groups: dict[Optional[str], tuple[Any, list[Any]]],
                    source: Path) -> None:
    """``<out-dir>/<subject>-<target>.nii.gz`` for every subject without an ``out`` column; names must not clash."""
    if out_dir is None and any(s.output is None for s in subjects):
        raise InputError(source, "no output folder", "add --out-dir DIR (or an 'out' column to the CSV)")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(out_dir, f"cannot create the output folder ({exc.strerror})", "choose another --out-dir") from None
    seen: dict[Path, str] = {}
    for synthesizer, members in groups.values():
        for subject in members:
            if subject.output is None:
                subject.output = out_dir / f"{subject.name}-{synthesizer.target}.nii.gz"  # type: ignore[operator]
            if subject.output in seen:
                raise InputError(source, f"subjects {seen[subject.output]} and {subject.name} would both write "
                                 f"{subject.output}", "give them distinct names or outputs")
            seen[subject.output] = subject.name


def _print_summary(console: Any, items: list[Any], shard: Optional[tuple[int, int]], listed: int) -> None:
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
            console.print(f"[yellow]warning:[/] {item.subject.name}: {warning}", highlight=False, soft_wrap=True)
    counts = {status: sum(item.status == status for item in items) for status in style}
    part = f"shard {shard[0]}/{shard[1]}: {len(items)} of {listed} subjects; " if shard else ""
    console.print(f"{part}{counts['ok']} synthesized, {counts['skipped']} skipped (output exists), {counts['failed']} failed",
                  highlight=False, soft_wrap=True)
