"""What every command shares: the one-line error contract, signal exits, stderr console, JSON lines on stdout."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import warnings
from collections.abc import Iterator
from typing import Any, Callable, NoReturn, TypeVar

import typer

from mrsynth.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception, raised where Ctrl-C's KeyboardInterrupt would be.

    A subclass of KeyboardInterrupt so that everything that already cleans up after Ctrl-C (``finally`` blocks,
    atomic writes, worker pools) does the same for a scheduler's or ``kill``'s SIGTERM without knowing about it.
    """


def signal_exit_code(signum: int) -> int:
    """The shell's convention for a run ended by a signal: 128 + its number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + signum


def signal_word(signum: int) -> str:
    """How the one error line names the signal that ended a run."""
    return "terminated" if signum == signal.SIGTERM else "interrupted"


def print_error(message: str) -> None:
    """One unwrapped ``error: ...`` line on stderr (rich would wrap long lines and break ``grep``)."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def print_warning(message: str) -> None:
    """One unwrapped ``warning: ...`` line on stderr, like :func:`print_error`."""
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


class _SignalGuard:
    """While a command runs: SIGINT raises KeyboardInterrupt, SIGTERM raises :class:`Terminated`, and the first
    signal is remembered, so one that a library swallowed (or turned into another error) still ends the command
    with its exit code instead of exit 0 or a traceback."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _raise(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Install the handlers (main thread only: Python delivers signals there) and restore the old ones after.
        A signal that is ignored (``nohup``, a background job's Ctrl-C) stays ignored."""
        from mrsynth.signals import signal_handlers

        with signal_handlers(STOP_SIGNALS, self._raise):
            yield


@contextlib.contextmanager
def _warnings_as_lines(quiet: bool) -> Iterator[None]:
    """Python warnings raised while a command runs (mrsynth's own :class:`MrsynthWarning`, a library's) reach the
    user as one ``warning: ...`` line each, without the file name and source line Python adds; ``--quiet`` mutes
    them like the command's other warnings."""

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        if not quiet:
            print_warning(" ".join(str(message).split()))

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def _exit_on_signal(signum: int) -> NoReturn:
    print_error(f"{signal_word(signum)} (nothing half-written was left behind; re-run to resume)")
    raise typer.Exit(signal_exit_code(signum))


def user_errors(func: F) -> F:
    """Turn :class:`InputError` into one error line and exit code 2, Ctrl-C into exit 130 and SIGTERM into exit 143
    (each with one error line), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        guard = _SignalGuard()
        try:
            with guard.installed(), _warnings_as_lines(bool(kwargs.get("quiet"))):
                result = func(*args, **kwargs)
        except InputError as exc:
            if guard.received is None:
                print_error(exc.one_line())
                raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt as exc:  # also one raised by code rather than by a signal
            guard.received = guard.received or (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        except BaseException:  # typer.Exit, or the error a library made of an interrupt it caught
            if guard.received is None:
                raise
        else:
            if guard.received is None:
                return result
        assert guard.received is not None  # every branch that gets here saw a signal
        _exit_on_signal(guard.received)

    return wrapper  # type: ignore[return-value]


def stderr_console(quiet: bool = False) -> Any:
    """A rich console on stderr for progress and human tables (stdout stays clean for ``--json``)."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def emit_json(record: dict[str, Any]) -> None:
    """One JSON object per line on stdout, flushed, so ``mrsynth ... --json | jq`` streams."""
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
