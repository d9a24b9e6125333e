"""The bundled models' held-out figures, as their registry entries and model cards state them, are what
`mrsynth eval` measures (the commands a user would run): the BraTS models on the holdout case, PD on avg152
z >= 45."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mrsynth.hub import load_registry

REPO = Path(__file__).resolve().parents[1]
PD = "agi-net-light-avg152-t1t2-pd"
BRATS = [e["name"] for e in load_registry() if "holdout/BraTS-GLI-00001-000" in e["metrics"].get("split", "")]


def entry(name: str) -> dict:
    return next(e for e in load_registry() if e["name"] == name)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "300"}  # rich tables on one line each, as a wide terminal shows them
    return subprocess.run([sys.executable, "-m", "mrsynth", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def holdout_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The holdout case as a user would store it: every BraTS contrast, all in the test split."""
    work = tmp_path_factory.mktemp("holdout")
    made = run(["preprocess", "--dataset", "brats", "--root", str(shared_data / "holdout"), "--out", "store",
                "--split", "0,0,1", "--dtype", "float32", "-q"], work)
    assert made.returncode == 0, made.stderr
    return work / "store"


def test_the_t1_t2_default_is_a_brats_model_with_holdout_figures() -> None:
    from mrsynth.hub.registry import default_entry

    scenarios = {entry(name)["scenario"] for name in BRATS if entry(name)["default"]}
    # Table 2's three scenarios and "any one of the four BraTS contrasts missing", each with a default
    assert scenarios == {"t1,t2->flair", "t2,flair->t1", "t1,flair->t2", "t1,t2,flair->t1c", "t1,t1c,t2->flair",
                         "t1,t1c,flair->t2", "t1c,t2,flair->t1"}
    assert len(BRATS) >= 2
    assert default_entry(["t1", "t2"])["name"] in BRATS


@pytest.fixture(scope="module")
def holdout_eval(holdout_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `mrsynth eval --dataset brats --data STORE` without --checkpoint, as a user asks "how good are the
    bundled models on my data": every registered model the store can serve, in one run."""
    work = tmp_path_factory.mktemp("holdout-eval")
    scored = run(["eval", "--dataset", "brats", "--data", str(holdout_store), "--split", "test", "--report", "report",
                  "--json"], work)
    assert scored.returncode == 0, scored.stderr
    records = [json.loads(line) for line in scored.stdout.splitlines()]
    return {"summaries": {r["model"]: r for r in records if r["kind"] == "summary"}, "table": scored.stderr,
            "report": work / "report"}


def test_eval_without_checkpoint_scores_every_bundled_model_the_store_serves(holdout_eval: dict) -> None:
    assert set(holdout_eval["summaries"]) == set(BRATS)  # the t1,t2->pd model needs a PD the store does not hold
    columns = list(dict.fromkeys(re.findall(r"[a-z0-9]+(?:,[a-z0-9]+)+->[a-z0-9]+", holdout_eval["table"])))
    assert set(columns) == {entry(name)["scenario"] for name in BRATS}
    paper = [s for s in ("t2,flair->t1", "t1,flair->t2", "t1,t2->flair") if s in columns]
    assert paper and columns[:len(paper)] == paper, "Table 2's scenarios first, in its column order"
    assert {p.name for p in holdout_eval["report"].iterdir()} >= {"metrics.csv", "summary.json"}


@pytest.mark.parametrize("name", BRATS)
def test_brats_model_card_figures_are_what_eval_measures_on_the_holdout(name: str, holdout_eval: dict) -> None:
    summary = holdout_eval["summaries"][name]
    stated = entry(name)["metrics"]
    assert summary["n_slices"] == 129
    assert summary["scenario"] == entry(name)["scenario"]
    for metric in ("psnr", "ssim", "mae"):
        assert summary[metric]["mean"] == pytest.approx(stated[metric], abs=0.005), metric
    card = (REPO / "weights" / entry(name)["card"]).read_text()
    assert entry(name)["sha256"] in card and f"{stated['psnr']:.2f}" in card and f"{stated['ssim']:.2f}" in card


def pd_test_slice_summary(shared_data: Path, tmp_path: Path, *synthesize_options: str) -> dict:
    """The PD model's `mrsynth eval` summary on avg152 z >= 45, synthesized as a user would: the design card's
    `mrsynth synthesize --t1 T1 --t2 T2 --out pd.nii.gz`."""
    avg152 = shared_data / "spm12_avg152"
    t1, t2, truth = (str(avg152 / f"avg152{c}.nii.gz") for c in ("T1", "T2", "PD"))
    made = run(["synthesize", "--t1", t1, "--t2", t2, *synthesize_options, "--out", "pd.nii.gz", "--device", "cpu",
                "--json", "-q"], tmp_path)  # no --model: the output's name asks for PD (the t1+t2 default is FLAIR)
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert record["target"] == "pd" and record["scenario"] == "t1,t2->pd"
    scored = run(["eval", "--pred", "pd.nii.gz", "--truth", truth, "--normalize", "truth", "--slices", "45:",
                  "--input", t1, "--input", t2, "--json", "-q"], tmp_path)
    assert scored.returncode == 0, scored.stderr
    summary = json.loads(scored.stdout.splitlines()[-1])
    assert summary["n_slices"] == 46
    return summary


def test_pd_model_card_figures_are_what_eval_measures_on_the_test_slices(shared_data: Path, tmp_path: Path) -> None:
    summary = pd_test_slice_summary(shared_data, tmp_path)
    stated = entry(PD)["metrics"]
    for metric in ("psnr", "ssim", "mae"):
        assert summary[metric]["mean"] == pytest.approx(stated[metric], abs=0.005), metric
    card = (REPO / "weights" / entry(PD)["card"]).read_text()
    assert f"{stated['psnr']:.2f}" in card and f"{stated['ssim']:.2f}" in card and entry(PD)["sha256"] in card


def test_pd_model_card_tta_row_is_what_eval_measures(shared_data: Path, tmp_path: Path) -> None:
    """The card's `--tta` row (left-right mirror averaging) is measured the same way as the registry figures."""
    summary = pd_test_slice_summary(shared_data, tmp_path, "--tta")
    card = (REPO / "weights" / entry(PD)["card"]).read_text()
    row = next(line for line in card.splitlines() if line.startswith("| **this model with `--tta`"))
    stated = [float(cell.strip(" *")) for cell in row.split("|")[2:5]]
    measured = [summary[metric]["mean"] for metric in ("psnr", "ssim", "mae")]
    assert measured == pytest.approx(stated, abs=0.005)


def test_the_design_cards_command_with_a_contradicting_target_is_refused(shared_data: Path, tmp_path: Path) -> None:
    avg152 = shared_data / "spm12_avg152"
    refused = run(["synthesize", "--t1", str(avg152 / "avg152T1.nii.gz"), "--t2", str(avg152 / "avg152T2.nii.gz"),
                   "--out", "pd.nii.gz", "--target", "flair"], tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "the output name says pd but --target is flair" in refused.stderr and not (tmp_path / "pd.nii.gz").exists()
