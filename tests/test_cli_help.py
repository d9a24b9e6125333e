"""Help text renders as written: no emoji codes or markup that rich would swallow or replace.

Typer renders help through rich markup, in which ``:x:`` becomes an emoji and ``[word]`` a style tag. A usage
pattern such as ``Y:X:SIZE`` once showed as "Y❌SIZE". These tests walk every command and option of the CLI.
"""

from __future__ import annotations

import re

import pytest
import typer.main
from rich._emoji_codes import EMOJI
from rich.text import Text

from mrsynth.cli.app import app

EMOJI_CODE = re.compile(r":(\S*?):")


def _help_texts() -> list[tuple[str, str]]:
    group = typer.main.get_command(app)
    texts = [("mrsynth", group.help or "")]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        texts.append((name, command.help or ""))
        texts += [(f"{name} {param.name}", getattr(param, "help", None) or "") for param in command.params]
    return texts


HELP_TEXTS = _help_texts()


def test_every_command_is_walked() -> None:
    names = {label for label, _ in HELP_TEXTS if " " not in label}
    assert {"synthesize", "preprocess", "train", "eval", "models", "push", "profile", "info"} <= names


@pytest.mark.parametrize(("label", "text"), HELP_TEXTS, ids=[label for label, _ in HELP_TEXTS])
def test_help_has_no_emoji_codes(label: str, text: str) -> None:
    codes = [code for code in EMOJI_CODE.findall(text) if code.lower() in EMOJI]
    assert not codes, f"{label}: rich would turn {codes} into emoji"


@pytest.mark.parametrize(("label", "text"), HELP_TEXTS, ids=[label for label, _ in HELP_TEXTS])
def test_help_markup_renders_as_written(label: str, text: str) -> None:
    """Every ``[`` that should show is escaped (``\\[``), and no markup tag eats words."""
    expected = text.replace("\\[", "[")
    assert Text.from_markup(text, emoji=False).plain == expected, label
