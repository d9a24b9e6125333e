"""User-facing errors.

Everything a user can cause (a missing file, a non-3-D image, a checkpoint that fails its checksum) is raised as
an :class:`InputError`; the command line turns it into one ``error: <file>: <problem> (<hint>)`` line and exit
code 2 instead of a traceback, and library users get an exception that names the culprit.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input that the user can fix: names the file (or option), the problem and what to do."""

    def __init__(self, source: str | Path | None, problem: str, hint: str | None = None) -> None:
        self.source = str(source) if source is not None else None
        self.problem = problem
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.source}: {self.problem}" if self.source else self.problem
        return f"{text} ({self.hint})" if self.hint else text


class MrsynthWarning(UserWarning):
    """Something the user should know that does not stop the work (a renamed model, a suspicious input).

    The command line prints each as one ``warning: ...`` line on stderr; library users get a normal Python
    warning they can filter by this class.
    """
