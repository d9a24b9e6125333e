"""``mrsynth push``: publish a checkpoint on the Hugging Face Hub with its metadata and a generated model card."""

from __future__ import annotations

from typing import Optional

import typer

from mrsynth.cli.common import emit_json, stderr_console, user_errors


@user_errors
def push_command(
    checkpoint: str = typer.Argument(..., help="The .safetensors checkpoint (or a registry name) to publish.",
                                     metavar="CHECKPOINT"),
    repo: str = typer.Option(..., "--repo", help="Target model repository OWNER/REPO (created if missing)."),
    revision: Optional[str] = typer.Option(
        None, "--revision", help="Branch to commit to (created if missing); default main."
    ),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    token: Optional[str] = typer.Option(
        None, "--token", help="Hub write token; by default the one from `hf auth login` or HF_TOKEN is used."
    ),
    license: Optional[str] = typer.Option(
        None, "--license", help="Licence id of the weights (e.g. cc-by-sa-3.0) if the checkpoint does not record it."
    ),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on stderr."),
) -> None:
    """Upload model.safetensors, metadata.json and a model card (README.md with licence, tags, metrics).

    Prints the commit to pin in weights/registry.toml with the file's sha256.

    Example: mrsynth push runs/ixi-pd/best.safetensors --repo my-lab/agi-net-ixi-t1t2-pd --json
    """
    from mrsynth.hub import push_checkpoint

    result = push_checkpoint(checkpoint, repo, revision=revision, private=True if private else None, token=token,
                             license=license, commit_message=message)
    if as_json:
        emit_json(result)
        return
    console = stderr_console(quiet)
    console.print(f"pushed {', '.join(result['files'])} to {result['url']}")
    console.print("pin it in weights/registry.toml:", highlight=False)
    console.print(
        f'hub = {{ repo = "{repo}", file = "model.safetensors", revision = "{result["commit"]}" }}\n'
        f'sha256 = "{result["sha256"]}"\nsize = {result["size"]}', markup=False, highlight=False,
    )
