"""The command line as a whole: instant help (no heavy imports), version, every command documented."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from mrsynth import __version__
from mrsynth.cli.app import app

HEAVY = ("torch", "numpy", "SimpleITK", "nibabel", "scipy", "matplotlib", "huggingface_hub")
COMMANDS = ("synthesize", "preprocess", "train", "eval", "models", "push", "profile", "info")


def test_help_imports_nothing_heavy() -> None:
    code = "import sys; from mrsynth.cli.app import app; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mrsynth {__version__}"


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"]).stdout
    for command in COMMANDS:
        assert command in listing
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (command, result.output)
        assert "mrsynth " + command in result.stdout or "Example" in result.stdout, command
