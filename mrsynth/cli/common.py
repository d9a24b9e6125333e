"""What every command shares: the one-line error contract, stderr console, JSON lines on stdout."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

import typer

from mrsynth.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def print_error(message: str) -> None:
    """One unwrapped ``error: ...`` line on stderr (rich would wrap long lines and break ``grep``)."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def user_errors(func: F) -> F:
    """Turn :class:`InputError` into one error line and exit code 2, Ctrl-C into exit 130, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            print_error(exc.one_line())
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print_error("interrupted (nothing half-written was left behind; re-run to resume)")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def stderr_console(quiet: bool = False) -> Any:
    """A rich console on stderr for progress and human tables (stdout stays clean for ``--json``)."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def emit_json(record: dict[str, Any]) -> None:
    """One JSON object per line on stdout, flushed, so ``mrsynth ... --json | jq`` streams."""
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
