"""``mrsynth train`` options: --resume against the run's own recipe, the CPU cost and no-validation warnings, and
help that shows no value type for flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import make_store
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.models import ModelConfig, preset
from mrsynth.training import TrainConfig
from mrsynth.training.cost import GIB, estimate_iteration
from mrsynth.training.state import load_state
from mrsynth.training.trainer import TrainResult

TINY_RUN = ["--scenario", "t1,t2->flair", "--arch", "resunet", "--preset", "tiny", "--framework", "l1",
            "--batch-size", "2", "--crop", "24", "--device", "cpu", "--threads", "1", "-q"]
CPU_HINT = "--preset tiny --crop 128 --batch-size 8 --framework l1"


@pytest.fixture(autouse=True)
def _setup(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps help and tables to 80 columns when not on a terminal
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads 1 sets it for the whole test process


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def tiny_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-iteration run of a tiny ResUnet (L1, batch 2, 24 px crops) to resume."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = CliRunner().invoke(app, ["train", "--data", str(store), *TINY_RUN, "--iters", "1", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run


def train_cli(*args: object):
    return CliRunner().invoke(app, ["train", *[str(a) for a in args]])


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    return lines[0]


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


# --- --resume ----------------------------------------------------------------------------------------------------


def test_resume_with_another_preset_is_refused_naming_the_run_and_the_option(store: Path, tiny_run: Path) -> None:
    line = one_error_line(train_cli("--data", store, "--scenario", "t1,t2->flair", "--preset", "light", "--resume",
                                    "--run-dir", tiny_run, "--device", "cpu"))
    assert line == (f"error: {tiny_run}: --preset light differs from the run being resumed (tiny) "
                    "(drop it or start a new --run-dir)")
    assert load_state(tiny_run / "resume.safetensors")["iteration"] == 1  # refused before anything was touched


def test_resume_names_every_differing_option(store: Path, tiny_run: Path) -> None:
    line = one_error_line(train_cli("--data", store, "--scenario", "t1,t2->pd", "--arch", "agi-net", "--framework",
                                    "pix2pix", "--widths", "8,16,16,32", "--groups", "8", "--lr", "0.01", "--amp",
                                    "--resume", "--run-dir", tiny_run, "--device", "cpu"))
    assert line == (f"error: {tiny_run}: --scenario t1,t2->pd, --arch agi-net, --widths 8,16,16,32, --framework "
                    "pix2pix, --lr 0.01, --amp differ from the run being resumed (t1,t2->flair, resunet, "
                    "16,32,64,128, l1, 0.0001, without --amp) (drop them or start a new --run-dir)")


def test_resume_takes_the_options_left_out_from_the_run(store: Path, tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    same = train_cli("--data", store, *TINY_RUN, "--iters", "2", "--resume", "--run-dir", run)  # given and equal: fine
    assert same.exit_code == 0, same.output
    bare = train_cli("--data", store, "--scenario", "t1,t2->flair", "--resume", "--run-dir", run, "--device", "cpu",
                     "--json")
    assert bare.exit_code == 0, bare.output
    done = [json.loads(line) for line in bare.stdout.splitlines()][-1]
    assert done["event"] == "done" and done["iteration"] == 2  # the run's --iters 2, not the default 120000
    record = json.loads((run / "run.json").read_text())
    assert record["model"]["arch"] == "resunet" and record["model"]["widths"] == [16, 32, 64, 128]
    assert record["train"]["framework"] == "l1" and record["train"]["batch_size"] == 2 and record["train"]["crop"] == 24
    assert not warnings(bare)  # the run's own light recipe is estimated, not the paper defaults


# --- warnings ----------------------------------------------------------------------------------------------------


def test_the_paper_recipe_is_estimated_as_heavy_and_the_cpu_recipe_is_not() -> None:
    paper = estimate_iteration(preset("paper"), TrainConfig(), (256, 256))
    assert paper.heavy and 14 * GIB < paper.memory_bytes < 18 * GIB and 8e12 < paper.flops < 11e12
    cpu = estimate_iteration(preset("tiny"), TrainConfig(framework="l1", batch_size=8, crop=128), (240, 240))
    assert not cpu.heavy and cpu.memory_bytes < GIB
    micro = ModelConfig(arch="resunet", widths=(8, 16, 16, 32))
    small = estimate_iteration(micro, TrainConfig(batch_size=2), (40, 40))
    double = estimate_iteration(micro, TrainConfig(batch_size=4), (40, 40))
    assert double.flops == 2 * small.flops and double.memory_bytes > small.memory_bytes


def test_heavy_cpu_training_warns_once_with_the_estimate_and_a_cpu_recipe(tmp_path: Path, monkeypatch) -> None:
    import mrsynth.training

    started = []
    monkeypatch.setattr(mrsynth.training, "train",  # the warning comes before training: no need to train
                        lambda *args, **kwargs: started.append(args) or TrainResult(Path("run"), 0, False))
    big = make_store(tmp_path / "store", size=128, slices=2)
    result = train_cli("--data", big, "--scenario", "t1,t2->flair", "--device", "cpu", "--run-dir", tmp_path / "r",
                       "--json")
    assert result.exit_code == 0, result.output
    [line] = warnings(result)
    assert "GiB" in line and "TFLOP per iteration" in line and "paper" in line and CPU_HINT in line
    assert {"event": "warning", "message": line.removeprefix("warning: ")} in [
        json.loads(record) for record in result.stdout.splitlines()]
    light = train_cli("--data", big, *TINY_RUN[:-1], "--run-dir", tmp_path / "r2")  # not --quiet
    assert light.exit_code == 0 and not warnings(light) and len(started) == 2


def test_a_store_without_validation_subjects_warns_and_writes_no_best(tmp_path: Path) -> None:
    data = make_store(tmp_path / "store", subjects={"sub-a": "train", "sub-b": "train"})
    run = tmp_path / "run"
    result = train_cli("--data", data, *TINY_RUN[:-1], "--iters", "1", "--run-dir", run, "--json")
    assert result.exit_code == 0, result.output
    message = (f"store {data} has no 'val' subjects: no validation, best.safetensors will not be written; the last "
               "checkpoint is last.safetensors")
    assert warnings(result) == [f"warning: {message}"]
    assert json.loads(result.stdout.splitlines()[0]) == {"event": "warning", "message": message}
    assert (run / "last.safetensors").is_file() and not (run / "best.safetensors").exists()


# --- help --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["synthesize"], ["train"], ["preprocess"]])
def test_help_shows_no_value_type_for_flags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "--help" in result.stdout
    assert "<bool>" not in result.stdout
    assert "<int>" in result.stdout or not command  # options that take values still show their type
