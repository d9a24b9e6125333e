"""``mrsynth models``: list the model registry, or fetch and verify models ahead of use (e.g. before going offline)."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from mrsynth.cli.common import emit_json, stderr_console, user_errors

NUMERIC = ("size MB", "PSNR dB", "SSIM %", "MAE x100")
COLUMNS = ("name", "scenario", "arch", "source", *NUMERIC, "default", "licence")
ESSENTIAL = ("name", "scenario", "PSNR dB", "SSIM %", "default")
OPTIONAL_BY_PRIORITY = ("MAE x100", "source", "size MB", "arch", "licence")
SHORT_HEADERS = {"PSNR dB": "PSNR", "SSIM %": "SSIM", "default": "def"}
"""Headers for a terminal too narrow for the essential columns under their full names (80 columns and the
registry's longest names): the units are in `--help` and the JSON keys, the model names must not lose a letter."""


def _source(entry: dict[str, Any]) -> str:
    if entry["source"] == "bundled":
        return "bundled" if entry["file"] == f"{entry['name']}.safetensors" else f"bundled: {entry['file']}"
    hub = entry["hub"]
    return f"hf://{hub['repo']}/{hub['file']}@{hub['revision'][:8]}"


def _metric(entry: dict[str, Any], key: str) -> str:
    value = entry["metrics"].get(key)
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


@user_errors
def models_command(
    fetch: Optional[List[str]] = typer.Option(
        None, "--fetch", metavar="MODEL",
        help="Download (if needed) and verify MODEL: a registry name, hf://OWNER/REPO/FILE@REVISION (file and "
             "revision optional) or a path. Repeatable. Prints its local path and sha256.",
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per model on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table on stderr."),
) -> None:
    """List the registered models: scenario, architecture, source, size, held-out PSNR/SSIM/MAE, default.

    Example: mrsynth models --json | jq -r 'select(.default) | .name'

    Example: mrsynth models --fetch hf://OWNER/REPO@v1 --json   (download and verify now, run offline later)
    """
    from mrsynth.hub import load_registry, registry_path

    if fetch:
        _fetch(fetch, as_json, quiet)
        return
    entries = load_registry()
    if as_json:
        for entry in entries:
            emit_json(entry)
        return
    console = stderr_console(quiet)
    if not entries:
        console.print(f"no models registered in {registry_path()}")
        return
    from rich.table import Table

    rows = [{"name": e["name"], "scenario": e["scenario"], "arch": e["arch"], "source": _source(e),
             "size MB": f"{e['size'] / 1e6:.1f}", "PSNR dB": _metric(e, "psnr"), "SSIM %": _metric(e, "ssim"),
             "MAE x100": _metric(e, "mae"), "default": "yes" if e["default"] else "", "licence": e["licence"]}
            for e in entries]
    table = Table(title="mrsynth models", caption=str(registry_path()))
    columns, headers = _columns_that_fit(rows, console.width)
    for column in columns:
        table.add_column(headers.get(column, column), justify="right" if column in NUMERIC else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(row[column] for column in columns))
    console.print(table)


def _columns_that_fit(rows: list[dict[str, str]], width: int) -> tuple[list[str], dict[str, str]]:
    """The columns to show in ``width`` characters: never a truncated model name (it is what users copy into
    ``--model``), so on a narrow terminal the less important columns go (``--json`` has them all)."""

    headers: dict[str, str] = {}

    def needed(column: str) -> int:  # neither cells nor headers wrap
        header = headers.get(column, column)
        return max([len(header), *(len(row[column]) for row in rows)]) + 3  # padding and one border

    if sum(needed(c) for c in ESSENTIAL) + 1 > width:
        headers = dict(SHORT_HEADERS)
    chosen = list(ESSENTIAL)
    for column in OPTIONAL_BY_PRIORITY:
        if sum(needed(c) for c in chosen) + needed(column) + 1 <= width:
            chosen.append(column)
    return [column for column in COLUMNS if column in chosen], headers


def _fetch(specs: list[str], as_json: bool, quiet: bool) -> None:
    """Resolve each spec the way ``--model`` does, check it is an mrsynth checkpoint, report where it lives."""
    from mrsynth.checkpoint import read_metadata
    from mrsynth.hub import find_entry, load_registry, resolve_model, sha256_file

    entries = load_registry()
    console = stderr_console(quiet)
    for spec in specs:
        path = resolve_model(spec)
        meta = read_metadata(path)  # refuses pickles and foreign files before anyone loads them
        scenario = meta["scenario"]
        record = {"model": spec, "path": str(path), "sha256": sha256_file(path), "size": path.stat().st_size,
                  "pinned": find_entry(spec, entries) is not None,
                  "scenario": f"{','.join(scenario['inputs'])}->{scenario['target']}",
                  "arch": meta.get("model", {}).get("arch")}
        if as_json:
            emit_json(record)
        else:
            check = "sha256 matches the registry pin" if record["pinned"] else f"sha256 {record['sha256']}"
            console.print(f"{spec}: {record['scenario']} ({record['arch']}) at {path}; {check}")
