"""The Typer application. Command modules import no torch at module level, so ``mrsynth --help`` is instant."""

from __future__ import annotations

from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from mrsynth import __version__
from mrsynth.cli import eval as eval_cli
from mrsynth.cli import info, models, preprocess, profile, push, synthesize, train


def _without_flag_types(params: list[Any]) -> list[Any]:
    """Typer's rich help prints a type after every option, flags included (``--overwrite <bool>``), which reads as
    if a flag took a value (``--overwrite true`` is then refused); an empty metavar shows none for flags."""
    for param in params:
        if getattr(param, "is_flag", False) and not getattr(param, "count", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    name="mrsynth",
    help="Synthesize a missing MRI contrast (e.g. FLAIR or PD from T1 + T2) with AGI-Net.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mrsynth {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(
        None, "--version", "-V", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Synthesize a missing MRI contrast (e.g. FLAIR or PD from T1 + T2) with AGI-Net."""
    from mrsynth.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # a command-line run owns its process: keep feature-map memory for reuse


# In pipeline order: the stages a scan or a dataset goes through, then the helpers.
app.command("synthesize", cls=_Command)(synthesize.synthesize_command)
app.command("preprocess", cls=_Command)(preprocess.preprocess_command)
app.command("train", cls=_Command)(train.train_command)
app.command("eval", cls=_Command)(eval_cli.eval_command)
app.command("models", cls=_Command)(models.models_command)
app.command("push", cls=_Command)(push.push_command)
app.command("profile", cls=_Command)(profile.profile_command)
app.command("info", cls=_Command)(info.info_command)


def main() -> None:
    app()
