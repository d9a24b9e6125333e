"""The one rule for rich progress bars, shared by the commands and the library code they drive (training)."""

from __future__ import annotations

from typing import Any


def progress_bar(console: Any, *columns: Any, transient: bool = True) -> Any:
    """A rich progress bar on ``console`` that stays off when that stream is no terminal, so logs and pipelines
    get neither redraw noise nor the blank line a stopped live display leaves behind."""
    from rich.progress import Progress

    return Progress(*columns, console=console, transient=transient, disable=not console.is_terminal)
