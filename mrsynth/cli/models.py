"""``mrsynth models``: list the model registry, or fetch and verify models ahead of use (e.g. before going offline)."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from mrsynth.cli.common import emit_json, stderr_console, user_errors


def _source(entry: dict[str, Any]) -> str:
    if entry["source"] == "bundled":
        return f"bundled: {entry['file']}"
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

    table = Table(title="mrsynth models", caption=str(registry_path()))
    numeric = ("size (MB)", "PSNR (dB)", "SSIM (%)", "MAE x100")
    for column in ("name", "scenario", "arch", "source", *numeric, "default", "licence"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for e in entries:
        table.add_row(e["name"], e["scenario"], e["arch"], _source(e), f"{e['size'] / 1e6:.1f}",
                      _metric(e, "psnr"), _metric(e, "ssim"), _metric(e, "mae"), "yes" if e["default"] else "",
                      e["licence"])
    console.print(table)


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
