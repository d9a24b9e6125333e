"""``mrsynth synthesize`` in batch mode (``--batch LIST.csv``, ``--input-dir DIR``, ``--bids DATASET``): the subject
list, one loaded model per target, output names, BIDS sidecars, and the summary table.

Every subject goes through :func:`mrsynth.pipeline.batch.synthesize_batch`, i.e. the same pipeline as one subject.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from mrsynth.cli.common import EXIT_OK, EXIT_PARTIAL, emit_json, stderr_console
from mrsynth.errors import InputError
from mrsynth.progress import progress_bar


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


def run_batch(sources: dict[str, Optional[Path]], out_dir: Optional[Path], preview: Optional[Path],
              options: dict[str, Any], shard: Optional[tuple[int, int]], as_json: bool, quiet: bool) -> int:
    """Every listed subject (or one shard of them) through the pipeline; the exit code is 1 if any failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from mrsynth.io.subjects import shard_subjects
    from mrsynth.pipeline.batch import synthesize_batch

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
