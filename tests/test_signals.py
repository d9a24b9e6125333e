"""Signals and half-written files: SIGTERM exits 143 and Ctrl-C 130 with one error line from every command, an
interrupted atomic write leaves nothing and propagates, and the temporary file a SIGKILL leaves is cleaned up by
the next write of the same output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import typer
from synth_helpers import DEMO_T1, DEMO_T2, checkpoint, crop
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.cli.common import Terminated, user_errors
from mrsynth.io import atomic
from mrsynth.io.atomic import atomic_output

TERMINATED_LINE = "error: terminated (nothing half-written was left behind; re-run to resume)"
INTERRUPTED_LINE = "error: interrupted (nothing half-written was left behind; re-run to resume)"


class SignalReachedTheTest(Exception):
    """What the test's own handler raises: user_errors must have replaced it, so seeing it is a failure."""


@pytest.fixture(autouse=True)
def own_handlers() -> Iterator[Callable[[int, object], None]]:
    """Handlers that keep a stray signal from killing pytest, restored after each test; returned so a test can check
    that user_errors put them back."""

    def handler(signum: int, frame: object) -> None:
        raise SignalReachedTheTest(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield handler
    for sig, old in previous.items():
        signal.signal(sig, old)


def command_app(body: Callable[[], None]) -> typer.Typer:
    """A one-command app whose command, wrapped like every mrsynth command, runs ``body``."""
    test_app = typer.Typer()

    @test_app.command()
    @user_errors
    def run() -> None:
        body()

    return test_app


def send(signum: int) -> None:
    """Deliver ``signum`` to this process and give Python the chance to run its handler."""
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler raises and ends the sleep at once; a handler that does not would show as a failure


def assert_one_line(result, code: int, line: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert result.stderr.strip().splitlines() == [line]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(("signum", "code", "line"), [(signal.SIGTERM, 143, TERMINATED_LINE),
                                                      (signal.SIGINT, 130, INTERRUPTED_LINE)])
def test_a_signal_during_a_write_exits_with_its_code_and_leaves_no_file(tmp_path, own_handlers, signum, code, line):
    def body() -> None:
        with atomic_output(tmp_path / "out.nii.gz") as tmp:
            tmp.write_bytes(b"half")
            send(signum)

    assert_one_line(CliRunner().invoke(command_app(body), []), code, line)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is own_handlers and signal.getsignal(signal.SIGINT) is own_handlers


def test_an_interrupt_a_library_swallowed_still_exits_130(tmp_path):
    def swallowing_body() -> None:
        try:
            send(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # what a careless library does; the command then goes on and finishes
        (tmp_path / "preview.png").write_bytes(b"complete")

    assert_one_line(CliRunner().invoke(command_app(swallowing_body), []), 130, INTERRUPTED_LINE)

    def converting_body() -> None:
        try:
            send(signal.SIGTERM)
        except KeyboardInterrupt:
            raise KeyError("PolyCollection:kwdoc") from None  # matplotlib does this to an interrupted import

    assert_one_line(CliRunner().invoke(command_app(converting_body), []), 143, TERMINATED_LINE)


def test_an_ignored_sigterm_stays_ignored(tmp_path):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as under nohup-like launchers; restored by the fixture

    def body() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        (tmp_path / "done").write_text("ok")

    result = CliRunner().invoke(command_app(body), [])
    assert result.exit_code == 0 and (tmp_path / "done").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_sigterm_while_synthesize_writes_exits_143_and_leaves_nothing(tmp_path, monkeypatch):
    from mrsynth.io import volumes

    inputs = {"t1": crop(DEMO_T1, tmp_path / "t1.nii.gz"), "t2": crop(DEMO_T2, tmp_path / "t2.nii.gz")}
    model = checkpoint(tmp_path / "micro.safetensors", slice_size=[128, 128])
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def half_then_sigterm(target: Path, image: object) -> None:
        Path(target).write_bytes(b"half")
        send(signal.SIGTERM)

    monkeypatch.setattr(volumes, "_write_gzip", half_then_sigterm)
    result = CliRunner().invoke(app, ["synthesize", "--t1", str(inputs["t1"]), "--t2", str(inputs["t2"]),
                                      "--model", str(model), "--out", str(out_dir / "flair.nii.gz"),
                                      "--preview", str(out_dir / "flair.png"), "--device", "cpu"])
    assert_one_line(result, 143, TERMINATED_LINE)
    assert list(out_dir.iterdir()) == []


def test_sigterm_stops_preprocess_with_143_and_no_temporary_file(tmp_path, shared_data):
    """A real process and a real signal: the store keeps only complete subjects, stderr has one line."""
    case = shared_data / "brats-style" / "TCGA-FG-6692" / "TCGA-FG-6692"
    rows = [f"s{i:02d},{case}-t1n.nii.gz,{case}-t2w.nii.gz" for i in range(40)]  # far more than run before the signal
    (tmp_path / "list.csv").write_text("\n".join(["subject,t1,t2", *rows]) + "\n")
    store = tmp_path / "store"
    process = subprocess.Popen([sys.executable, "-m", "mrsynth", "preprocess", "--dataset", "folder", "--csv",
                                str(tmp_path / "list.csv"), "--out", str(store), "--split", "1.0,0.0,0.0", "-q"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((store / "subjects").glob("s*.npy")):  # a finished subject
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == [TERMINATED_LINE]
    files = [p.name for p in store.rglob("*") if p.is_file()]
    assert "manifest.json" in files and 1 <= len(files) - 1 < len(rows)
    assert not [name for name in files if name.startswith(".") or ".part" in name]


# --- atomic writes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, Terminated])
def test_an_interrupted_writer_leaves_no_file_and_the_interrupt_propagates(tmp_path, monkeypatch, interrupt):
    import numpy as np
    import SimpleITK as sitk

    from mrsynth.io import volumes

    def half_then_interrupt(image: object, filename: str, *args: object) -> None:
        Path(filename).write_bytes(b"half")
        raise interrupt()

    monkeypatch.setattr(volumes.sitk, "WriteImage", half_then_interrupt)
    with pytest.raises(interrupt):
        volumes.write_volume(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)), tmp_path / "out.mha")
    assert list(tmp_path.iterdir()) == []


def part_name(output: str, host: str, pid: int) -> str:
    return f".{output}.{host}.{pid}.k2j3x9q1.part.nii.gz"


def test_the_next_write_removes_the_part_file_a_sigkill_left(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from mrsynth.io.atomic import atomic_output\n"
        "with atomic_output(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half'); print('writing', flush=True); time.sleep(60)\n"), str(tmp_path / "out.nii.gz")],
        stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(f".out.nii.gz.{atomic._host()}.{writer.pid}.")
    with atomic_output(tmp_path / "out.nii.gz") as tmp:
        tmp.write_bytes(b"complete")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_part_files_of_live_writers_and_other_outputs_are_kept(tmp_path):
    host = atomic._host()
    kept = [part_name("out.nii.gz", host, os.getppid()),  # a live process (pytest's parent) may still write it
            part_name("out.nii.gz", "another-host", 999_999_999),  # another machine sharing the folder
            part_name("other.nii.gz", host, 999_999_999),  # another output
            part_name("out.nii.gz", host, os.getpid())]  # this process, now: a write in flight
    recycled = tmp_path / part_name("out.nii.gz", host, os.getpid()).replace("k2j3x9q1", "old00000")
    for name in kept:
        (tmp_path / name).write_bytes(b"half")
    recycled.write_bytes(b"half")
    old = atomic.PROCESS_STARTED - 3600
    os.utime(recycled, (old, old))  # our pid, but from before this process: a killed run's pid, reused
    with atomic_output(tmp_path / "out.nii.gz") as tmp:
        tmp.write_bytes(b"complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "out.nii.gz"])
