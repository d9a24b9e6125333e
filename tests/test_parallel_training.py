"""scripts/parallel_training.py: N commands at a time, a failure or Ctrl-C stops the others, no child outlives it.

The commands are small Python processes (a sleeper that records its pid, one that exits with a code), so the
stopping rule is tested in a few seconds without training anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
from parallel_training import Job, JobFailed, run_jobs


def sleeper(pid_file: Path, seconds: float = 60) -> list[str]:
    """A command that writes its pid, then sleeps (default SIGTERM: it dies at once)."""
    return [sys.executable, "-c",
            f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep({seconds})"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return int(path.read_text())


def test_runs_width_at_a_time_and_reports_each_success(tmp_path: Path) -> None:
    """Three commands of 0.5 s, two at a time: all succeed, each once, and the third starts only after one ended."""
    done: list[str] = []
    stamp = [sys.executable, "-c", "import sys, time; time.sleep(0.5); open(sys.argv[1], 'w').write(str(time.time()))"]
    jobs = [Job(f"job{i}", [*stamp, str(tmp_path / f"{i}.t")], lambda s, i=i: done.append(f"job{i}")) for i in range(3)]
    started = time.monotonic()
    run_jobs(jobs, 2, lambda message: None)
    assert sorted(done) == ["job0", "job1", "job2"]
    ends = sorted(float((tmp_path / f"{i}.t").read_text()) for i in range(3))
    assert ends[2] - ends[0] >= 0.4  # the third ran after a slot freed, not beside the first two
    assert time.monotonic() - started < 30


def test_a_failure_stops_the_others_and_marks_nothing(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    failing = Job("failing", [sys.executable, "-c", "import time, sys; time.sleep(1); sys.exit(3)"], pytest.fail)
    slow = Job("slow", sleeper(pid_file), pytest.fail)
    started = time.monotonic()
    with pytest.raises(JobFailed) as caught:
        run_jobs([slow, failing], 2, lambda message: None)
    assert caught.value.job is failing and caught.value.code == 3
    assert time.monotonic() - started < 30  # the 60-s sleeper was stopped, not waited for
    assert not alive(wait_for(pid_file))


def test_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    """SIGINT to the caller (the children are in their own session and do not get it): both children are stopped
    and reaped before the caller exits with Ctrl-C's KeyboardInterrupt."""
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    driver = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(SCRIPTS)!r})
        from parallel_training import Job, run_jobs
        sleep = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
        try:
            run_jobs([Job(path, [sys.executable, "-c", sleep, path], print) for path in sys.argv[1:]], 2, print)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    caller = subprocess.Popen([sys.executable, "-c", driver, *map(str, pids)], stdout=subprocess.DEVNULL)
    children = [wait_for(p) for p in pids]
    assert all(alive(pid) for pid in children)
    caller.send_signal(signal.SIGINT)
    assert caller.wait(timeout=30) == 130
    assert not any(alive(pid) for pid in children)
