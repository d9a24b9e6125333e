"""The Typer application. Command modules import no torch at module level, so ``mrsynth --help`` is instant."""

from __future__ import annotations

from typing import Optional

import typer

from mrsynth import __version__
from mrsynth.cli import eval as eval_cli
from mrsynth.cli import info, models, preprocess, profile, push, synthesize, train

app = typer.Typer(
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
app.command("synthesize")(synthesize.synthesize_command)
app.command("preprocess")(preprocess.preprocess_command)
app.command("train")(train.train_command)
app.command("eval")(eval_cli.eval_command)
app.command("models")(models.models_command)
app.command("push")(push.push_command)
app.command("profile")(profile.profile_command)
app.command("info")(info.info_command)


def main() -> None:
    app()
