"""scripts/reproduce_paper.py --scale smoke: every table file is written with the paper's rows and columns, and a
second call retrains nothing (the runs' checkpoints keep their mtimes) but rewrites every table."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_eval import blob_slices
from test_frameworks import stand_in_weights

from mrsynth.data.store import STORE_FORMAT, STORE_KIND, write_manifest, write_subject

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_paper.py"
TABLES = ("table3", "table4", "table5", "table6", "table7", "fig3")
ROWS = {"table3": 4, "table4": 4, "table5": 6, "table6": 8, "table7": 8, "fig3": 2}
DISTINCT_RUNS = 22  # 4 (Table 3) + 2 (Table 4) + 4 (Table 5) + 6 (Table 6) + 6 (Table 7); Fig. 3 reuses two


def ixi_like_store(root: Path) -> Path:
    """Three one-split subjects of three 64-px slices; t1, t2 and pd (= their mean), so the script picks t1,t2->pd."""
    subjects, split = {}, {}
    for seed, (name, part) in enumerate([("s1", "train"), ("s2", "val"), ("s3", "test")]):
        write_subject(root, name, blob_slices(3, seed=seed, size=64))
        subjects[name] = {"n_slices": 3, "slice_indices": [10, 11, 12]}
        split[name] = part
    write_manifest(root, {"kind": STORE_KIND, "format": STORE_FORMAT, "dataset": "ixi",
                          "contrasts": ["t1", "t2", "pd"], "slice_size": [64, 64], "split": split,
                          "subjects": subjects})
    return root


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoke_writes_every_table_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    store = ixi_like_store(tmp_path / "store")
    vgg = stand_in_weights(tmp_path / "vgg.safetensors")
    out = tmp_path / "out"
    args = ["--data", str(store), "--out", str(out), "--scale", "smoke", "--vgg-weights", str(vgg)]

    first = run_script(*args)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.splitlines()[-1])
    assert summary == {"scale": "smoke", "scenario": "t1,t2->pd", "runs_trained": DISTINCT_RUNS, "runs_reused": 0,
                       "runs_not_run": 0}
    for name in TABLES:
        rows = read_csv(out / "tables" / f"{name}.csv")
        assert len(rows) == ROWS[name], name
        text = (out / "tables" / f"{name}.md").read_text()
        assert "scale: `smoke`" in text and "machine:" in text and "mrsynth " in text
        metric = "psnr_3px" if name == "fig3" else "psnr"
        assert all(np.isfinite(float(r[metric])) for r in rows), name
    table5 = read_csv(out / "tables" / "table5.csv")
    assert [r["n"] for r in table5] == ["", "1", "2", "4", "8", "16"]
    assert [r["paper_params_m"] for r in table5] == ["17.04", "33.58", "25.31", "21.19", "19.15", "18.18"]
    params = [float(r["params_m"]) for r in table5]
    assert all(float(r["flops_g"]) > 0 for r in table5 + read_csv(out / "tables" / "table7.csv"))
    assert params[1] > params[2] > params[3] > params[4] > params[5] > params[0]  # the paper's ordering, measured
    fig3_rows = read_csv(out / "tables" / "fig3.csv")
    fig3 = fig3_rows[0]
    assert [k for k in fig3 if k.startswith("psnr_")] == [f"psnr_{x:g}px" for x in np.arange(0, 3.01, 0.5)]
    # Table 4 is scored at a 3-px shift: its ResUnet and AGI-Net rows are Fig. 3's 3-px points of the same runs
    # (same seeded shift directions), not their unshifted figures (the curve's level 0)
    table4 = {r["run"]: r for r in read_csv(out / "tables" / "table4.csv")}
    for row in fig3_rows:
        assert table4[row["run"]]["psnr"] == row["psnr_3px"] and table4[row["run"]]["ssim"] == row["ssim_3px"]
    assert any(row["psnr_3px"] != row["psnr_0px"] for row in fig3_rows)
    table6 = read_csv(out / "tables" / "table6.csv")
    assert [(r["method"], r["network"]) for r in table6] == [
        (f, n) for f in ("pix2pix", "pgan", "mmgan", "medsynth") for n in ("ResUnet", "AGI-Net")]
    # each AGI-Net generator is paired with its own framework's ResUnet (not with row 1): the mean per-slice
    # difference is the difference of the two rows' slice means, up to the tables' rounding
    for resunet_row, agi_row in zip(table6[::2], table6[1::2]):
        assert resunet_row["p_psnr_vs_resunet"] == resunet_row["psnr_gain_vs_resunet"] == ""
        assert 0 <= float(agi_row["p_psnr_vs_resunet"]) <= 1
        gain = float(agi_row["psnr_gain_vs_resunet"])
        assert abs(gain - (float(agi_row["psnr"]) - float(resunet_row["psnr"]))) < 0.016, agi_row["method"]

    checkpoints = sorted(out.glob("runs/*/best.safetensors"))
    assert len(checkpoints) == DISTINCT_RUNS
    mtimes = [p.stat().st_mtime_ns for p in checkpoints]
    tables_before = {n: (out / "tables" / f"{n}.md").stat().st_mtime_ns for n in TABLES}
    again = run_script(*args)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["runs_trained"] == 0
    assert [p.stat().st_mtime_ns for p in checkpoints] == mtimes
    assert all((out / "tables" / f"{n}.md").stat().st_mtime_ns > tables_before[n] for n in TABLES)


def test_interrupted_run_is_resumed(tmp_path: Path) -> None:
    """A run stopped mid-way (resume state at iteration 1 of 2, no finished marker) continues with --resume to
    iteration 2, instead of a fresh start (which mrsynth train would refuse)."""
    sys.path.insert(0, str(SCRIPT.parent))
    from reproduce_paper import SCALES, Run

    store = ixi_like_store(tmp_path / "store")
    out = tmp_path / "out"
    run = Run("resunet", "pix2pix")
    options = list(SCALES["smoke"].train)
    options[options.index("--iters") + 1] = "1"  # the interrupted run got this far
    stopped = subprocess.run([sys.executable, "-m", "mrsynth", "train", "--data", str(store), "--scenario", "t1,t2->pd",
                              *run.options(), *options, "--run-dir", str(out / "runs" / run.name), "--quiet"],
                             capture_output=True, text=True, check=False)
    assert stopped.returncode == 0, stopped.stderr
    done = run_script("--data", str(store), "--out", str(out), "--scale", "smoke", "--only", "fig3")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "runs" / run.name / "reproduced.json").read_text())["resumed"] is True
    assert max(int(r["iteration"]) for r in read_csv(out / "runs" / run.name / "log.csv")) == 2
    assert json.loads(done.stdout.splitlines()[-1])["runs_trained"] == 2  # ResUnet resumed, AGI-Net trained


def test_jobs_2_trains_each_run_in_its_own_process_then_writes_the_table(tmp_path: Path) -> None:
    """--jobs 2 at smoke scale, Table 3 (4 distinct runs): the same table files as one run at a time, a marker in
    every run dir, and commands.sh keeps the `mrsynth train` lines a user reruns (no --threads, no interpreter)."""
    store = ixi_like_store(tmp_path / "store")
    out = tmp_path / "out"
    done = run_script("--data", str(store), "--out", str(out), "--scale", "smoke", "--only", "table3", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["runs_trained"] == ROWS["table3"]
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["table3.csv", "table3.md"]
    rows = read_csv(out / "tables" / "table3.csv")
    assert len(rows) == ROWS["table3"] and all(np.isfinite(float(r["psnr"])) for r in rows)
    assert done.stderr.count("2 at a time") == ROWS["table3"]  # each run started by the parallel path
    trains = [line for line in (out / "commands.sh").read_text().splitlines() if line.startswith("mrsynth train")]
    markers = [json.loads((out / "runs" / r["run"] / "reproduced.json").read_text()) for r in rows]
    assert sorted(m["command"] for m in markers) == sorted(trains) and len(trains) == ROWS["table3"]
    assert all(line.count("--threads") == 1 for line in trains)  # the smoke scale's own --threads 1 only


def test_parallel_train_command_adds_threads_unless_the_scale_sets_them(tmp_path: Path) -> None:
    """The subprocess is `python -m mrsynth` + the sequential path's train command, + --threads cores // jobs where
    the scale leaves threads to torch (cpu), + --resume for an interrupted run."""
    sys.path.insert(0, str(SCRIPT.parent))
    from reproduce_paper import SCALES, Reproduction, Run

    run = Run("agi-net", "l1")

    def argv(scale: str, jobs: int) -> list[str]:
        rep = Reproduction(tmp_path, tmp_path / "out", SCALES[scale], ["t1", "t2"], "pd", "test", [], print)
        command = rep.train_command(run)
        full = rep.subprocess_argv(run, jobs)
        assert full[:3 + len(command)] == [sys.executable, "-m", "mrsynth", *command]
        return full[3 + len(command):]

    assert argv("cpu", 2) == ["--threads", str(max(1, (os.cpu_count() or 1) // 2))]
    assert argv("cpu", 64) == ["--threads", "1"]
    assert argv("smoke", 2) == []  # the smoke scale gives --threads 1 itself
    resume = tmp_path / "out" / "runs" / run.name / "resume.safetensors"
    resume.parent.mkdir(parents=True)
    resume.write_bytes(b"")
    assert argv("smoke", 2) == ["--resume"]


def test_vgg_weights_are_looked_up_where_mrsynth_train_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pGAN is skipped only when neither --vgg-weights nor torchvision's cached file is there (no download tried)."""
    sys.path.insert(0, str(SCRIPT.parent))
    from reproduce_paper import missing_vgg_weights

    from mrsynth.training.vgg_weights import TORCHVISION_FILE

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reason = missing_vgg_weights(None)
    assert reason is not None and str(tmp_path / "hub" / "checkpoints" / TORCHVISION_FILE) in reason
    assert missing_vgg_weights(tmp_path / "given.safetensors") is None
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / TORCHVISION_FILE).write_bytes(b"cached")
    assert missing_vgg_weights(None) is None


def test_pgan_rows_without_vgg_weights_are_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --vgg-weights and an empty torchvision cache (TORCH_HOME: an empty folder, so nothing is downloaded): the
    two pGAN rows say why they were not run, one warning says so, and the rest of Table 6 is trained and scored."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    store = ixi_like_store(tmp_path / "store")
    out = tmp_path / "out"
    done = run_script("--data", str(store), "--out", str(out), "--scale", "smoke", "--only", "table6")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["runs_not_run"] == 2
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "pGAN" in warnings[0] and "--vgg-weights" in warnings[0], done.stderr
    rows = read_csv(out / "tables" / "table6.csv")
    assert len(rows) == ROWS["table6"]
    for row in rows:
        if row["method"] == "pgan":
            assert [row[m] for m in ("psnr", "ssim", "mae")] == ["not run: no VGG16 weights (give --vgg-weights)"] * 3
        else:
            assert np.isfinite(float(row["psnr"])), row
    assert not list(out.glob("runs/pgan_*")) and "--framework pgan" not in (out / "commands.sh").read_text()
    assert "not run: no VGG16 weights" in (out / "tables" / "table6.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--only", "table9"], "--only"),
    (["--jobs", "0"], "--jobs"),
    (["--split", "train", "--vgg-weights", "{missing}"], "--vgg-weights"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    store = ixi_like_store(tmp_path / "store")
    extra = [e.format(missing=tmp_path / "absent.safetensors") for e in extra]
    done = run_script("--data", str(store), "--out", str(tmp_path / "out"), "--scale", "smoke", *extra)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_a_store_without_the_papers_contrasts_is_refused(tmp_path: Path) -> None:
    store = ixi_like_store(tmp_path / "store")
    manifest = json.loads((store / "manifest.json").read_text())
    write_manifest(store, {**manifest, "contrasts": ["t1", "t1c", "pd"]})
    done = run_script("--data", str(store), "--out", str(tmp_path / "out"), "--scale", "smoke")
    assert done.returncode == 2 and "no t2" in done.stderr and done.stderr.count("\n") == 1
