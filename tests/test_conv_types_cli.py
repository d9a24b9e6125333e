"""Table 4's conv types end to end: ``mrsynth train`` a few CPU iterations, the checkpoint in ``mrsynth synthesize``,
and ``mrsynth profile`` counting every FLOP of the new modules."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from synth_helpers import DEMO_T1, DEMO_T2, crop
from synth_helpers import run_synthesize as run
from test_train import make_store
from typer.testing import CliRunner

from mrsynth.checkpoint import load_checkpoint, read_metadata
from mrsynth.cli.app import app
from mrsynth.models import AdaptiveRotatedConv2d, DeformConv2d, ModelConfig, build_model
from mrsynth.models.profile import count_flops

SMALL = (slice(100, 148), slice(96, 144), slice(70, 73))  # 48x48x3 voxels through the brain of the demo case
MODULES = {"deform-resunet": DeformConv2d, "arc-resunet": AdaptiveRotatedConv2d}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("arch", ["deform-resunet", "arc-resunet"])
def test_train_then_synthesize(store: Path, tmp_path: Path, arch: str) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(store), "--scenario", "t1,t2->flair", "--arch", arch, "--framework", "pix2pix",
        "--widths", "8,16,16,32", "--groups", "4", "--iters", "3", "--batch-size", "2", "--crop", "24",
        "--val-every", "3", "--log-every", "1", "--run-dir", str(run_dir), "--device", "cpu", "--json",
    ])
    assert result.exit_code == 0, result.output
    logs = [e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "log"]
    assert [e["iteration"] for e in logs] == [1, 2, 3]
    assert all(np.isfinite(e["l1"]) and np.isfinite(e["total"]) for e in logs)
    checkpoint = run_dir / "best.safetensors"
    assert read_metadata(checkpoint)["model"]["arch"] == arch
    model, _ = load_checkpoint(checkpoint)
    assert sum(isinstance(m, MODULES[arch]) for m in model.modules()) == 10  # 5 stages x 2 ResBlocks

    t1, t2 = crop(DEMO_T1, tmp_path / "t1.nii.gz", SMALL), crop(DEMO_T2, tmp_path / "t2.nii.gz", SMALL)
    out = tmp_path / "flair.nii.gz"
    synthesized = run("--t1", t1, "--t2", t2, "--out", out, "--model", checkpoint, "--device", "cpu")
    assert synthesized.exit_code == 0, synthesized.stderr
    volume = np.asarray(nib.load(str(out)).dataobj)
    assert volume.shape == (48, 48, 3) and np.isfinite(volume).all() and volume.std() > 0


def test_train_rejects_an_unknown_arch_in_one_line(store: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->flair", "--arch", "dcn",
                                      "--run-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "deform-resunet" in lines[0]


def replaced_slots(config: ModelConfig, size: int) -> list[tuple[int, int]]:
    """(channels, side) of every replaced slot: ResBlocks keep their stage's resolution, side / 2 per level."""
    level = {"down1": 0, "down2": 1, "down3": 2, "body": 3, "up1": 2, "up2": 1, "up3": 0}
    return [(config.stage_width(s), size >> level[s]) for s in config.cagr_stages for _ in range(config.blocks_per_stage)]


def test_profile_counts_deform_offsets_and_sampling() -> None:
    """Deform-ResUnet - ResUnet = per slot: the 3x3 offset/mask conv (C -> 27) and bilinear sampling of C x 9 taps
    (4 multiply-adds each); the deformable conv's own product costs what the plain conv did."""
    config = ModelConfig(arch="deform-resunet", widths=(8, 16, 16, 32))
    x = torch.randn(1, 2, 32, 32)
    extra = count_flops(build_model(config), x) - count_flops(build_model(config.with_(arch="resunet")), x)
    want = sum(2 * c * 27 * 9 * side**2 + 2 * 4 * c * 9 * side**2 for c, side in replaced_slots(config, 32))
    assert extra == want


def test_profile_counts_arc_routing_and_kernel_combination() -> None:
    """ARC-ResUnet - ResUnet = per slot: the depthwise 3x3 routing conv, the two C -> n heads, and the product of
    the (9 x 9n) rotation-and-combination matrix with the n stacked kernels (C x C x 9n)."""
    n = 4
    config = ModelConfig(arch="arc-resunet", widths=(8, 16, 16, 32), groups=n)
    x = torch.randn(1, 2, 32, 32)
    extra = count_flops(build_model(config), x) - count_flops(build_model(config.with_(arch="resunet")), x)
    want = sum(2 * c * 9 * side**2 + 2 * 2 * c * n + 2 * 9 * 9 * n * c * c for c, side in replaced_slots(config, 32))
    assert extra == want


@pytest.mark.parametrize("arch, groups", [("deform-resunet", None), ("arc-resunet", 8)])
def test_profile_command_json_for_the_new_archs(arch: str, groups: int | None) -> None:
    result = CliRunner().invoke(app, ["profile", "--arch", arch, "--groups", "8", "--preset", "tiny", "--size", "32",
                                      "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["arch"] == arch and record["groups"] == groups
    model = build_model(ModelConfig(arch=arch, widths=(16, 32, 64, 128), groups=8))
    assert record["params_m"] == round(sum(p.numel() for p in model.parameters()) / 1e6, 4)
    assert record["gflops"] > 0
