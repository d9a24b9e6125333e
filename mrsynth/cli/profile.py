"""``mrsynth profile``: parameters and FLOPs of an architecture, the numbers of the paper's Tables 4, 5 and 7."""

from __future__ import annotations

from typing import Optional

import typer

from mrsynth.cli.common import emit_json, stderr_console, user_errors
from mrsynth.errors import InputError


@user_errors
def profile_command(
    arch: str = typer.Option("agi-net", "--arch", help="agi-net, resunet, deform-resunet (DCNv2) or arc-resunet (ARC)."),
    groups: int = typer.Option(8, "--groups", "-n", help="n: CAGR groups (agi-net) or ARC kernels (arc-resunet)."),
    in_channels: int = typer.Option(2, "--in-channels", help="Input contrasts (model channels)."),
    size: int = typer.Option(256, "--size", help="Square slice size H = W."),
    preset: str = typer.Option("paper", "--preset", help="Width preset: paper, light or tiny."),
    stages: Optional[str] = typer.Option(
        None, "--stages", help="Comma-separated stages whose first convs are replaced (default: down1,down2,down3,body,up1)."
    ),
    no_attention: bool = typer.Option(False, "--no-attention", help="GR-only ablation."),
    no_rolling: bool = typer.Option(False, "--no-rolling", help="CA-only ablation."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line on stdout."),
) -> None:
    """Count parameters (M) and FLOPs (G, 2 x MACs) of one forward pass.

    Example: mrsynth profile --arch agi-net --groups 8 --json

    Table 4 comparisons of the paper: mrsynth profile --arch deform-resunet; mrsynth profile --arch arc-resunet -n 8
    """
    from mrsynth.models import build_model
    from mrsynth.models import preset as make_preset
    from mrsynth.models.profile import profile_model

    options = {"arch": arch, "groups": groups, "in_channels": in_channels,
               "attention": not no_attention, "rolling": not no_rolling}
    if stages:
        options["cagr_stages"] = tuple(s.strip() for s in stages.split(",") if s.strip())
    try:
        config = make_preset(preset, **options)
    except ValueError as exc:
        raise InputError("--arch/--groups/--preset/--stages", str(exc)) from None
    result = profile_model(build_model(config), in_channels=in_channels, size=size)
    if as_json:
        emit_json({"arch": arch, "groups": groups if arch in ("agi-net", "arc-resunet") else None, "size": size,
                   "params_m": round(result.params_m, 4), "gflops": round(result.gflops, 3)})
        return
    from rich.table import Table

    table = Table(title=f"{arch} at {size}x{size}, {in_channels} input channel(s)")
    table.add_column("Params (M)", justify="right")
    table.add_column("FLOPs (G)", justify="right")
    table.add_row(f"{result.params_m:.2f}", f"{result.gflops:.2f}")
    stderr_console().print(table)
