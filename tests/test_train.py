"""mrsynth train: the loop, losses, sharding, resume (bitwise on CPU), checkpoints, the CLI, and an overfit check.

Everything runs on tiny phantom data (seeded discs with smooth contrasts and a nonlinear target) so the default
run stays within its time budget on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrsynth.checkpoint import default_normalization, load_checkpoint, read_metadata
from mrsynth.cli.app import app
from mrsynth.data.store import STORE_FORMAT, STORE_KIND, write_manifest, write_subject
from mrsynth.models import CAGR, ModelConfig, build_model
from mrsynth.training import TrainConfig, train
from mrsynth.training.augment import AugmentedPairs, background_level, brain_crop_origin, zoom_rotate
from mrsynth.training.sampling import ShardedBatchSampler
from mrsynth.training.state import load_state, save_state
def phantom(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (t1, t2) -> target slices: disc-shaped 'brains' with smooth contrasts and a nonlinear target."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    xs, ys = [], []
    for _ in range(n):
        c = torch.rand(4, generator=g) * 0.6 - 0.3
        brain = (((xx - c[0]) ** 2 + (yy - c[1]) ** 2) < (0.6 + c[2] * 0.5) ** 2).float()
        texture = 0.12 * torch.rand(size, size, generator=g)
        t1 = brain * (0.3 + texture + 0.4 * torch.sigmoid(4 * (xx * c[3] + yy)))
        t2 = brain * (0.2 + 0.7 * torch.sigmoid(-3 * yy + 2 * xx * c[0]))
        xs.append(torch.stack([t1, t2]))
        ys.append((brain * (1.5 * t1 * t2)).clamp(0, 1)[None])
    return torch.stack(xs), torch.stack(ys)


class PhantomPairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 8, size: int = 32, seed: int = 0) -> None:
        self.x, self.y = phantom(n, size, seed)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def make_store(root: Path, size: int = 40, slices: int = 6, subjects: dict[str, str] | None = None) -> Path:
    """A slice store of phantom subjects with contrasts (t1, t2, flair) written with the store's own writers."""
    subjects = subjects or {"sub-a": "train", "sub-b": "train", "sub-c": "val"}
    entries = {}
    for k, name in enumerate(sorted(subjects)):
        x, y = phantom(slices, size, seed=100 + k)
        array = torch.cat([x, y], dim=1).numpy().astype(np.float16)
        write_subject(root, name, array)
        entries[name] = {"slice_indices": list(range(10, 10 + slices)), "spacing": [1.0, 1.0, 1.0],
                         "n_slices": slices}
    write_manifest(root, {
        "kind": STORE_KIND, "format": STORE_FORMAT, "contrasts": ["t1", "t2", "flair"], "slice_size": [size, size],
        "normalization": default_normalization(), "split": subjects, "subjects": entries, "dataset": "phantom",
    })
    return root


def phantom_metadata(size: int = 32) -> dict:
    return {"scenario": {"inputs": ["t1", "t2"], "target": "flair"}, "normalization": default_normalization(),
            "slice_size": [size, size], "voxel_size_mm": [1.0, 1.0, 1.0], "skull_stripped": True,
            "training": {"data": "synthetic phantoms", "licence": "CC0-1.0"}}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; also makes CPU results independent of core count
    yield
    torch.set_num_threads(threads)


# --- sampling and augmentation -------------------------------------------------------------------------------


def test_ranks_get_disjoint_batches_that_cover_each_epoch() -> None:
    n, batch, world = 24, 3, 2
    seen: list[int] = []
    for rank in range(world):
        sampler = ShardedBatchSampler(n, batch, iters=4, seed=5, rank=rank, world_size=world)
        seen += [index for batch_ in sampler for index, _ in batch_]
    assert sorted(seen) == list(range(n))  # 4 iterations x 2 ranks x 3 = one epoch, each slice exactly once


def test_sampler_restart_reproduces_the_stream() -> None:
    full = list(ShardedBatchSampler(10, 4, iters=7, seed=1))
    resumed = list(ShardedBatchSampler(10, 4, iters=7, seed=1, start_iteration=3))
    assert resumed == full[3:]
    assert list(ShardedBatchSampler(10, 4, iters=7, seed=2)) != full


def test_augmentation_is_a_function_of_the_stream_position() -> None:
    data = PhantomPairs(4, 40, seed=3)
    aug = AugmentedPairs(data, seed=7, crop=24, flip=True, shift_px=2.0, gamma=0.2, scale=(0.5, 1.2))
    x1, y1 = aug[(2, 11)]
    x2, y2 = aug[(2, 11)]
    assert x1.shape == (2, 24, 24) and y1.shape == (1, 24, 24)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(aug[(2, 12)][0], x1) or not torch.equal(aug[(2, 13)][0], x1)


def test_gamma_augmentation_bends_each_input_and_leaves_the_target() -> None:
    data = PhantomPairs(4, 40, seed=3)
    plain = AugmentedPairs(data, seed=7, flip=False)
    bent = AugmentedPairs(data, seed=7, flip=False, gamma=0.3)
    x0, y0 = plain[(1, 5)]
    exponents = []
    for position in range(5, 25):
        x, y = bent[(1, position)]
        assert torch.equal(y, y0) and torch.equal(x == 0, x0 == 0)  # target untouched, background stays 0
        assert torch.equal(x, bent[(1, position)][0])  # a function of the stream position
        inside = (x0 > 0.05) & (x0 < 0.95)
        for c in range(x.shape[0]):  # x = x0 ** gamma, one gamma per input channel
            gamma = torch.log(x[c][inside[c]]) / torch.log(x0[c][inside[c]])
            assert float(gamma.max() - gamma.min()) < 1e-3
            exponents.append(float(gamma.mean()))
    log_gamma = np.log(exponents)
    assert np.abs(log_gamma).max() <= 0.3 + 1e-3
    assert log_gamma.min() < -0.1 and log_gamma.max() > 0.1  # both directions drawn


def test_zoom_matches_a_float64_reference_on_a_ramp() -> None:
    """Bilinear sampling reproduces a linear ramp exactly, so inside the zoomed image the output must equal the
    ramp evaluated at c + (p - c) / factor (c: the image centre, align_corners=False geometry); what the zoom
    uncovers takes the background level (the median of the image's edge ring)."""
    g = torch.Generator().manual_seed(5)
    a, b, c = (float(v) for v in torch.rand(3, generator=g))
    height, width = 48, 40
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    ramp = (a * rows / height + b * cols / width + c).expand(height, width)
    level = float(background_level(ramp[None].float())[0])
    edge = torch.cat([ramp[0], ramp[-1], ramp[:, 0], ramp[:, -1]])
    assert abs(level - float(edge.median())) < 1e-6
    for factor in (0.45, 0.8, 1.3):
        out = zoom_rotate(ramp[None].float(), factor)[0].double()
        src_rows = (height - 1) / 2 + (rows - (height - 1) / 2) / factor
        src_cols = (width - 1) / 2 + (cols - (width - 1) / 2) / factor
        reference = (a * src_rows / height + b * src_cols / width + c).expand(height, width)
        inside = ((src_rows >= 0) & (src_rows <= height - 1)) & ((src_cols >= 0) & (src_cols <= width - 1))
        error = (out - reference).abs()[inside] / reference.abs()[inside]
        assert float(error.max()) < 1e-5, factor
        if factor < 1:  # zooming out: everything beyond the shrunken image is background
            far = (src_rows < -1) | (src_rows > height) | (src_cols < -1) | (src_cols > width)
            assert far.any() and float((out[far] - level).abs().max()) < 1e-6


def disc_slice(size: int, background: float, pad: int, seed: int) -> torch.Tensor:
    """(2, size, size): a random 'head' disc on a constant background, inside a zero frame of ``pad`` px (a store's
    padding); background 0 is a skull-stripped slice."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    head = (yy**2 + xx**2) < 0.6
    x = torch.where(head, torch.rand(2, size, size, generator=g) * 0.8 + 0.2, torch.full((2, size, size), background))
    x[:, :pad], x[:, size - pad :], x[:, :, :pad], x[:, :, size - pad :] = 0, 0, 0, 0
    return x


def test_scale_augmentation_zooms_inputs_and_target_together() -> None:
    x = disc_slice(64, background=0.0, pad=0, seed=11)
    head_area = float((x[0] != 0).float().mean())
    pairs = AugmentedPairs([(x, x[:1].clone())], seed=3, flip=False, scale=(0.3, 1.2))
    sides = []
    for position in range(40):
        xa, ya = pairs[(0, position)]
        assert xa.shape == (2, 64, 64) and torch.equal(ya[0], xa[0])  # one transform for inputs and target
        sides.append(float((xa[0] != 0).float().mean() / head_area) ** 0.5)  # ~ the zoom factor
    assert 0.27 <= min(sides) < 0.45 and max(sides) > 1.05  # small heads and zoom-ins are both drawn


def test_zoom_fills_with_the_background_of_an_unstripped_scan() -> None:
    x = disc_slice(64, background=0.02, pad=3, seed=2)
    assert torch.allclose(background_level(x), torch.full((2,), 0.02))
    small = zoom_rotate(x, 0.4)
    assert bool((small > 0.019).all())  # no zero frame: padding and uncovered field of view are air, not 0
    assert float((small[:, :10, :10] - 0.02).abs().max()) < 1e-6
    stripped = disc_slice(64, background=0.0, pad=3, seed=2)
    assert torch.equal(background_level(stripped), torch.zeros(2))
    assert float(zoom_rotate(stripped, 0.4)[:, :10, :10].abs().max()) == 0.0


def test_brain_crop_stays_on_the_brain() -> None:
    x = torch.zeros(2, 100, 100)
    x[:, 60:80, 10:30] = 0.5
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        top, left = brain_crop_origin(x, 32, g)
        assert 0 <= top <= 68 and 0 <= left <= 68
        assert x[:, top : top + 32, left : left + 32].sum() == x.sum()  # the 20x20 brain fits: fully inside


# --- resume state ----------------------------------------------------------------------------------------------


def test_resume_state_round_trip_keeps_types(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"opt": opt.state_dict(), "iteration": 7, "best": None, "rng": torch.get_rng_state(), "x": [1.5, "a"]}
    back = load_state(save_state(tmp_path / "s.safetensors", state))
    assert back["iteration"] == 7 and back["best"] is None and back["x"] == [1.5, "a"]
    assert set(back["opt"]["state"]) == {0, 1}  # integer parameter ids survive
    assert back["opt"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(back["rng"], state["rng"])


# --- the loop ----------------------------------------------------------------------------------------------------


def _tiny(arch: str = "agi-net") -> ModelConfig:
    return ModelConfig(arch=arch, widths=(8, 16, 16, 32), groups=4)


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "amp"])  # amp: bfloat16 where the CPU has it
def test_resume_after_interrupt_is_bitwise_identical(tmp_path: Path, amp: bool) -> None:
    config = TrainConfig(framework="pix2pix", iters=6, batch_size=2, lr=1e-3, crop=24, shift_px=1.0, scale=(0.6, 1.1), rotate=20.0,
                         val_every=3, save_every=100, log_every=1, lr_schedule="cosine", amp=amp)
    data, val = PhantomPairs(6, 32, seed=0), PhantomPairs(2, 32, seed=1)
    straight = train(_tiny(), data, val, tmp_path / "a", config, phantom_metadata(), device="cpu")
    assert straight.iteration == 6 and not straight.interrupted

    def interrupt(iteration: int, losses: dict) -> None:
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does; the trainer finishes the step and saves

    stopped = train(_tiny(), data, val, tmp_path / "b", config, phantom_metadata(), device="cpu", on_iteration=interrupt)
    assert stopped.interrupted and stopped.iteration == 3
    assert load_state(tmp_path / "b" / "resume.safetensors")["iteration"] == 3
    resumed = train(_tiny(), data, val, tmp_path / "b", config, phantom_metadata(), device="cpu", resume=True)
    assert resumed.iteration == 6 and not resumed.interrupted
    a = load_state(tmp_path / "a" / "resume.safetensors")
    b = load_state(tmp_path / "b" / "resume.safetensors")
    for part in ("generator", "discriminator"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name} differs after resume"
    assert a["opt_g"]["state"][0]["step"] == b["opt_g"]["state"][0]["step"] == 6
    # the CSV log has each logged iteration once, even though the second run logged iterations 1-3 before stopping
    rows = (tmp_path / "b" / "log.csv").read_text().splitlines()[1:]
    l1_iters = [int(r.split(",")[0]) for r in rows if ",train,l1," in r]
    assert l1_iters == list(range(1, 7))


def test_a_run_dir_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    from mrsynth.errors import InputError

    config = TrainConfig(framework="l1", iters=1, batch_size=2, crop=16)
    train(_tiny("resunet"), PhantomPairs(2, 32), None, tmp_path, config, phantom_metadata(), device="cpu")
    with pytest.raises(InputError, match="already holds"):
        train(_tiny("resunet"), PhantomPairs(2, 32), None, tmp_path, config, phantom_metadata(), device="cpu")


def test_overfits_eight_slices(tmp_path: Path) -> None:
    """A small AGI-Net must fit 8 slices: fails if gradients, the rolling offsets or the attention are broken."""
    torch.manual_seed(0)
    data = PhantomPairs(8, 32, seed=0)
    config = TrainConfig(framework="l1", iters=80, batch_size=8, lr=2e-3, flip=False, val_every=1000,
                         save_every=1000, log_every=80)
    losses: list[float] = []
    result = train(_tiny(), data, None, tmp_path, config, phantom_metadata(), device="cpu",
                   on_iteration=lambda it, parts: losses.append(parts["l1"]))
    assert losses[0] > 0.1  # the target's mean is ~0.13: the untrained model is far from it
    assert max(losses[-5:]) < 0.02, f"training L1 stayed at {losses[-5:]}"
    model, _ = load_checkpoint(result.run_dir / "last.safetensors")
    cagrs = [m for m in model.modules() if isinstance(m, CAGR)]
    torch.manual_seed(0)  # the trainer's seed: the same initial weights as the trained model had
    fresh = [m for m in build_model(_tiny()).modules() if isinstance(m, CAGR)]
    assert cagrs and all(m.routing.offset_head.weight.abs().max() > 1e-4 for m in cagrs), "offsets never moved"
    assert any(not torch.equal(m.attention.fuse.weight, f.attention.fuse.weight) for m, f in zip(cagrs, fresh)), \
        "attention never learned"


# --- the command line ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("arch", ["agi-net", "resunet"])
@pytest.mark.parametrize("framework", ["pix2pix", "l1"])
def test_cli_trains_every_arch_and_framework(store: Path, tmp_path: Path, arch: str, framework: str) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--data", str(store), "--scenario", "t1,t2->flair", "--arch", arch, "--framework", framework,
        "--widths", "8,16,16,32", "--groups", "4", "--iters", "3", "--batch-size", "2", "--crop", "24",
        "--val-every", "3", "--log-every", "1", "--run-dir", str(run), "--device", "cpu", "--json", "--gamma-aug", "0.2",
        "--scale-aug", "0.5,1.1",
    ])
    assert result.exit_code == 0, result.output
    recipe = json.loads((run / "run.json").read_text())["train"]
    assert recipe["gamma"] == 0.2 and recipe["scale"] == [0.5, 1.1]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    logs = [e for e in events if e["event"] == "log"]
    assert [e["iteration"] for e in logs] == [1, 2, 3]
    assert all(np.isfinite(e["l1"]) and np.isfinite(e["total"]) for e in logs)
    assert ("adv" in logs[0]) == (framework == "pix2pix")
    assert events[-1]["event"] == "done" and events[-1]["iteration"] == 3
    for name in ("last.safetensors", "best.safetensors", "resume.safetensors", "log.csv", "run.json"):
        assert (run / name).is_file(), name
    meta = read_metadata(run / "best.safetensors")
    assert meta["scenario"] == {"inputs": ["t1", "t2"], "target": "flair"}
    assert meta["model"]["arch"] == arch and meta["training"]["framework"] == framework
    assert meta["training"]["iterations"] == 3 and meta["normalization"] == default_normalization()
    model, _ = load_checkpoint(run / "last.safetensors")
    assert model(torch.rand(1, 2, 40, 40)).shape == (1, 1, 40, 40)


def test_cli_errors_are_one_line(store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "--data", str(tmp_path), "--scenario", "t1,t2->flair", "--run-dir", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "error:" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->pd", "--run-dir", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "pd" in bad.output
    bad = runner.invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->flair", "--slice-range", "x",
                              "--run-dir", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "--slice-range" in bad.output
    if not torch.cuda.is_available():
        bad = runner.invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->flair", "--device", "cuda",
                                  "--iters", "1", "--run-dir", str(tmp_path / "r")])
        assert bad.exit_code == 2 and "--device" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->flair", "--gamma-aug", "2",
                              "--run-dir", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "gamma" in bad.output and "Traceback" not in bad.output
    for text, named in (("1.2,0.3", "scale"), ("0.3", "--scale-aug"), ("a,b", "--scale-aug")):
        bad = runner.invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->flair", "--scale-aug", text,
                                  "--run-dir", str(tmp_path / "r")])
        assert bad.exit_code == 2 and named in bad.output and "Traceback" not in bad.output, text


def test_cli_slice_range_limits_training_slices(store: Path, tmp_path: Path) -> None:
    from mrsynth.training.data import store_datasets

    _, train_set, val_set = store_datasets(str(store), ["t1", "t2"], "flair", "0:13", "val", "13:")
    assert len(train_set) == 2 * 3 and len(val_set) == 3  # axial 10-12 of two train subjects; 13-15 of the val one


def test_sigterm_saves_a_resume_state_and_resume_finishes(store: Path, tmp_path: Path) -> None:
    """A scheduler's SIGTERM: exit 143, one error line, a complete resume state, no temporary file; --resume then
    completes the run."""
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "mrsynth", "train", "--data", str(store), "--scenario", "t1,t2->flair",
               "--arch", "resunet", "--framework", "l1", "--widths", "8,16,16,32", "--batch-size", "2",
               "--crop", "24", "--log-every", "1", "--save-every", "1000", "--val-every", "1000",
               "--run-dir", str(run), "--device", "cpu", "--threads", "1", "-q"]
    process = subprocess.Popen([*command, "--iters", "100000"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((run / "log.csv").is_file() and ",train,l1," in (run / "log.csv").read_text()):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "terminated at iteration" in errors[0] and "--resume" in errors[0], stderr
    assert "Traceback" not in stderr
    stopped_at = load_state(run / "resume.safetensors")["iteration"]
    assert 1 <= stopped_at < 100000 and (run / "last.safetensors").is_file()
    assert not [p for p in run.iterdir() if ".part" in p.name or p.name.endswith(".tmp")]
    done = subprocess.run([*command, "--iters", str(stopped_at + 2), "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_state(run / "resume.safetensors")["iteration"] == stopped_at + 2


@pytest.mark.gpu
def test_amp_on_cuda_trains_and_resumes(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    config = TrainConfig(framework="pix2pix", iters=4, batch_size=2, crop=24, amp=True, val_every=2, save_every=2)
    result = train(_tiny(), PhantomPairs(4, 32), PhantomPairs(2, 32), tmp_path, config, phantom_metadata(), device="cuda")
    assert result.iteration == 4 and all(np.isfinite(v) for v in result.losses.values())
    state = load_state(tmp_path / "resume.safetensors")
    assert state["scaler"]["scale"] > 0  # the grad scaler's state travels with the run
