"""``mrsynth preprocess``: a raw dataset (IXI, BraTS, or a CSV list) -> a resumable slice store for training."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from mrsynth.cli.common import EXIT_OK, EXIT_PARTIAL, emit_json, stderr_console, user_errors
from mrsynth.errors import InputError
from mrsynth.progress import progress_bar

REASON_WIDTH = 90
FULL_TABLE_LIMIT = 40  # above this many subjects the table lists only the skipped and failed ones


@user_errors
def preprocess_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="ixi, brats or folder."),
    root: Optional[list[Path]] = typer.Option(None, "--root", help="Dataset folder (ixi, brats); repeat it to "
                                              "read several folders into one store."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="folder: CSV 'subject,t1,t2,...' of volume paths."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder (created, or resumed if it exists)."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Store only these contrasts, e.g. 't1,t2->flair'."),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="TRAIN,VAL,TEST subjects: counts (500,40,40) or fractions."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="JSON or CSV subject -> train/val/test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (same seed, same split)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Subjects processed in parallel."),
    size: Optional[str] = typer.Option(None, "--size", help="In-plane H,W (default: ixi 256,256, brats 240,240, "
                                                           "folder: own size padded to a multiple of 8)."),
    dtype: str = typer.Option("float16", "--dtype", help="Stored dtype: float16 (half the disk) or float32."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild a store made with other settings."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per subject and a summary line on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Preprocess a dataset into a slice store: canonical orientation, one grid per subject (IXI T1 registered
    to T2/PD), in-plane crop/pad, [0, 1] normalisation, brain slices only, subject-level split.

    Re-running with the same options resumes; subjects that fail are reported and skipped (exit 1).

    Example: mrsynth preprocess --dataset brats --root BraTS2023/ --out stores/brats --split 500,40,40 --workers 8

    Several folders (e.g. BraTS 2018 and 2023 names) make one store: --root BraTS2018/ --root BraTS2023/
    """
    from mrsynth.data.preprocess import outcome_record, preprocess

    if dataset == "folder":
        if csv_file is None:
            raise InputError("--csv", "the folder dataset needs --csv LIST.csv", "columns subject,t1,t2,... of paths")
        source = csv_file
    else:
        if not root:
            raise InputError("--root", f"the {dataset} dataset needs --root DIR")
        source = root
    contrasts = _scenario_contrasts(scenario) if scenario else None
    console = stderr_console(quiet or as_json)
    command = shlex.join(["mrsynth", *sys.argv[1:]])

    with _Progress(console) as progress:
        result = preprocess(
            dataset, source, out, contrasts=contrasts, split=split, split_file=split_file, seed=seed,
            workers=workers, size=_parse_size(size) if size else None, dtype=dtype, overwrite=overwrite,
            command=command, on_start=progress.start,
            on_subject=(lambda o: emit_json(outcome_record(o))) if as_json else progress.advance,
        )
    counts = {s: result.count(s) for s in ("processed", "done", "skipped", "failed")}
    if as_json:
        for outcome in result.outcomes:
            if outcome.status == "skipped":
                emit_json(outcome_record(outcome))
        emit_json({"store": str(result.store), **counts, "unused": len(result.unused), "notes": result.notes})
    else:
        _print_summary(console, result, counts)
    raise typer.Exit(EXIT_PARTIAL if counts["failed"] else EXIT_OK)


def _scenario_contrasts(text: str) -> list[str]:
    from mrsynth.hub.registry import parse_scenario

    try:
        inputs, target = parse_scenario(text)
    except ValueError as exc:
        raise InputError("--scenario", str(exc), "write e.g. t1,t2->flair") from None
    return [*inputs, target]


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError("--size", f"cannot read {text!r}", "write H,W e.g. 256,256") from None
    if height < 8 or width < 8:
        raise InputError("--size", f"{text!r} is too small", "slices must be at least 8x8")
    return height, width


class _Progress:
    """A rich progress bar on stderr, shown only once the work list is known (so a usage error prints alone)."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        self._bar = progress_bar(console, TextColumn("preprocess"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.description}"), transient=False)
        self._task = None

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._bar.stop()

    def start(self, total: int, done: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("", total=total, completed=done)

    def advance(self, outcome) -> None:
        if self._task is not None and outcome.status != "done":
            self._bar.update(self._task, advance=1, description=f"{outcome.subject} {outcome.status}")


def _print_summary(console, result, counts: dict[str, int]) -> None:
    """Every subject for small datasets; only the skipped and failed ones (with reasons) for large ones."""
    from rich.table import Table

    headline = (f"{result.store}: {counts['processed']} processed, {counts['done']} already done, "
                f"{counts['skipped']} skipped, {counts['failed']} failed, {len(result.unused)} unused")
    table = Table()
    for name, justify in (("subject", "left"), ("status", "left"), ("split", "left"), ("slices", "right")):
        table.add_column(name, justify=justify)
    table.add_column("reason", overflow="fold", max_width=REASON_WIDTH)
    shown = result.outcomes if len(result.outcomes) <= FULL_TABLE_LIMIT else [
        o for o in result.outcomes if o.status in ("skipped", "failed")]
    for o in shown:
        table.add_row(o.subject, o.status, o.split or "", "" if o.n_slices is None else str(o.n_slices), o.reason or "")
    if shown:
        console.print(table)
    console.print(headline)
    for note in result.notes:
        console.print(f"note: {note}")
