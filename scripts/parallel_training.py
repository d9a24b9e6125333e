"""Run training commands N at a time, each in its own process, and never leave one running behind the caller.

Why: small CPU models use two threads poorly, so on a few cores several single-thread runs side by side finish
sooner than the same runs one after another with all threads each (docs/reproducing.md). What this module adds to
``subprocess`` is the stopping rule:

- a command that fails stops the others: each gets SIGTERM, which ``mrsynth train`` turns into "stop after this
  iteration and save a resume state" (a command still starting up just exits), and is waited for; then
  :class:`JobFailed` names the failed one;
- Ctrl-C, SIGTERM or SIGHUP to the caller stops them the same way before the interrupt goes on; a second Ctrl-C
  while waiting kills them outright.

Children run in their own session, so a terminal's Ctrl-C reaches only the caller, which stops each child exactly
once. ``on_success`` runs in the caller after a child exited 0, and only then (the place to mark a run finished).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

POLL_S = 0.1
HANGUP_LIKE = (signal.SIGTERM, signal.SIGHUP)  # signals that end the caller as Ctrl-C does, with the children


@dataclass
class Job:
    """One command, ``name`` saying what it does ("training RUN"); ``on_success(seconds)`` is called after it
    exits 0."""

    name: str
    argv: list[str]
    on_success: Callable[[float], None]


class JobFailed(Exception):
    """A command exited non-zero (``code``: its exit status, 128 + N for a child ended by signal N)."""

    def __init__(self, job: Job, code: int) -> None:
        super().__init__(f"{job.name} exited with {code}")
        self.job = job
        self.code = code


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP to the caller while commands run, raised where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def exit_code(returncode: int) -> int:
    """The shell's status for a child: its own code, or 128 + N when signal N ended it (Popen reports -N)."""
    return 128 - returncode if returncode < 0 else returncode


def run_jobs(jobs: list[Job], width: int, log: Callable[[str], None]) -> None:
    """Run ``jobs`` in order, at most ``width`` at a time; return when all succeeded, else raise :class:`JobFailed`
    (or the interrupt) after every other child has stopped."""
    queue = list(jobs)
    running: dict[subprocess.Popen, tuple[Job, float]] = {}
    with _stop_signals_raised():
        try:
            while queue or running:
                while queue and len(running) < width:
                    job = queue.pop(0)
                    log(f"{job.name} ({len(jobs) - len(queue)}/{len(jobs)}, {width} at a time)")
                    running[_start(job.argv)] = (job, time.monotonic())
                time.sleep(POLL_S)
                for process in [p for p in running if p.poll() is not None]:
                    job, started = running.pop(process)
                    if process.returncode != 0:
                        raise JobFailed(job, exit_code(process.returncode))
                    job.on_success(time.monotonic() - started)
        finally:
            _stop(list(running), log)


def _start(argv: list[str]) -> subprocess.Popen:
    """A child in its own session (Ctrl-C goes to the caller only), stdout discarded (``mrsynth train --json``'s
    event lines), stderr shared, so its warnings and one-line error reach the user unchanged."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)


def _stop(processes: list[subprocess.Popen], log: Callable[[str], None]) -> None:
    """SIGTERM to each child still running, then wait for all; a second Ctrl-C while waiting kills them."""
    live = [p for p in processes if p.poll() is None]
    if not live:
        return
    log(f"stopping {len(live)} run(s) still in progress")
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        for process in live:
            process.wait()
    except KeyboardInterrupt:
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for process in live:
            process.wait()
        raise


@contextlib.contextmanager
def _stop_signals_raised() -> Iterator[None]:
    """While children run, SIGTERM and SIGHUP raise :class:`Stopped` in the caller (default: die at once and leave
    the children running). Main thread only, where Python delivers signals; an ignored signal stays ignored."""
    from mrsynth.signals import signal_handlers

    def raise_stopped(signum: int, frame: object) -> None:
        raise Stopped(signum)

    with signal_handlers(HANGUP_LIKE, raise_stopped):
        yield
