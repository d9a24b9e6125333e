"""``mrsynth synthesize``: one subject (``--t1 A --t2 B --out C``) or many (``--batch LIST.csv`` / ``--input-dir`` /
``--bids``, :mod:`mrsynth.cli.batch`).

A thin layer over :mod:`mrsynth.inference`: it turns options into inputs, progress into a rich bar on stderr and
results into a summary table or JSON lines. Heavy imports happen inside the command so ``mrsynth --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mrsynth.cli.batch import parse_shard, run_batch
from mrsynth.cli.common import emit_json, stderr_console, user_errors
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
        code = run_batch(sources, out_dir, preview, options, parse_shard(shard), as_json, quiet)
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
