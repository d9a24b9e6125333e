"""The frameworks of Table 6 (pGAN, mmGAN, MedSynth): their losses against float64 hand computations, VGG16 weights
from a local stand-in file (never a download), mmGAN's curriculum and imputation contract, and a few CLI iterations
of each framework with AGI-Net and ResUnet whose checkpoints ``mrsynth synthesize`` runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synth_helpers import DEMO_T1, DEMO_T2, assert_one_error_line, crop
from test_train import make_store
from typer.testing import CliRunner

from mrsynth.checkpoint import load_checkpoint, read_metadata
from mrsynth.cli.app import app
from mrsynth.imputation import ImputationSpec, Imputer, impute, zero_fill
from mrsynth.models import ARCHITECTURES, ModelConfig, build_model
from mrsynth.training.curriculum import draw_present, missing_count
from mrsynth.training.losses import gradient_difference_loss
from mrsynth.training.perceptual import IMAGENET_MEAN, IMAGENET_STD, PerceptualLoss, vgg16_features
from mrsynth.training.vgg_weights import TORCHVISION_FILE, feature_network

TINY = ["--widths", "8,16,16,32", "--groups", "4", "--iters", "3", "--batch-size", "2", "--crop", "24",
        "--val-every", "3", "--log-every", "1", "--device", "cpu", "--threads", "1", "--json"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def relative_error(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


# --- losses against float64 hand computations ------------------------------------------------------------------


def test_gradient_difference_loss_matches_a_float64_loop() -> None:
    rng = np.random.default_rng(3)
    fake, target = rng.random((2, 1, 9, 11)), rng.random((2, 1, 9, 11))
    total = 0.0
    for axis in (0, 1):  # rows (y), then columns (x), pixel by pixel
        terms = []
        for b in range(2):
            for i in range(9 - (axis == 0)):
                for j in range(11 - (axis == 1)):
                    i2, j2 = (i + 1, j) if axis == 0 else (i, j + 1)
                    grad_t = abs(target[b, 0, i2, j2] - target[b, 0, i, j])
                    grad_f = abs(fake[b, 0, i2, j2] - fake[b, 0, i, j])
                    terms.append((grad_t - grad_f) ** 2)
        total += sum(terms) / len(terms)
    exact = gradient_difference_loss(torch.from_numpy(fake), torch.from_numpy(target))
    assert relative_error(float(exact), total) < 1e-12
    single = gradient_difference_loss(torch.from_numpy(fake).float(), torch.from_numpy(target).float())
    assert relative_error(float(single), total) < 1e-5
    assert float(gradient_difference_loss(torch.from_numpy(target), torch.from_numpy(target))) == 0.0


def _conv3x3_relu(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(C_in, H, W) -> (C_out, H, W): a 3x3 cross-correlation with zero padding 1, plus bias, then ReLU."""
    channels, height, width = image.shape
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((weight.shape[0], height, width))
    for o in range(weight.shape[0]):
        for c in range(channels):
            for di in range(3):
                for dj in range(3):
                    out[o] += weight[o, c, di, dj] * padded[c, di : di + height, dj : dj + width]
        out[o] += bias[o]
    return np.maximum(out, 0.0)


def test_perceptual_loss_matches_a_float64_hand_computation() -> None:
    """pGAN's L_perc = mean |V(y) - V(y^)| with V = VGG16 up to relu1_2 (conv, ReLU, conv, ReLU), grey values
    repeated into RGB and standardised with ImageNet's statistics, computed here with numpy loops."""
    torch.manual_seed(0)
    network = vgg16_features("relu1_2")
    rng = np.random.default_rng(7)
    fake, target = rng.random((2, 1, 8, 9)), rng.random((2, 1, 8, 9))
    w0, b0 = network[0].weight.detach().double().numpy(), network[0].bias.detach().double().numpy()
    w2, b2 = network[2].weight.detach().double().numpy(), network[2].bias.detach().double().numpy()
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]

    def features(image: np.ndarray) -> np.ndarray:
        rgb = (np.repeat(image, 3, axis=0) - mean) / std
        return _conv3x3_relu(_conv3x3_relu(rgb, w0, b0), w2, b2)

    reference = np.mean([np.abs(features(fake[b]) - features(target[b])).mean() for b in range(2)])
    loss = PerceptualLoss(network)
    got = loss(torch.from_numpy(fake).float(), torch.from_numpy(target).float())
    assert relative_error(float(got), reference) < 1e-5
    exact = loss.double()(torch.from_numpy(fake), torch.from_numpy(target))
    assert relative_error(float(exact), reference) < 1e-12


def test_vgg_trunk_has_torchvisions_layout() -> None:
    """Parameter names and shapes of torchvision's vgg16().features (config D), so its state dict loads."""
    trunk = vgg16_features("relu5_3")
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    expected = {}
    for index, (conv, width) in enumerate(zip(convs, widths)):
        fan_in = 3 if index == 0 else widths[index - 1]
        expected[f"{conv}.weight"], expected[f"{conv}.bias"] = (width, fan_in, 3, 3), (width,)
    assert {k: tuple(v.shape) for k, v in trunk.state_dict().items()} == expected
    assert len(trunk) == 30 and isinstance(trunk[29], torch.nn.ReLU)
    assert [i for i, m in enumerate(trunk) if isinstance(m, torch.nn.MaxPool2d)] == [4, 9, 16, 23]


# --- VGG16 weights: local files, torchvision's cache, the offline error --------------------------------------------


def stand_in_weights(path: Path, layer: str = "relu1_2", prefix: str = "features.", seed: int = 0) -> Path:
    """A locally made stand-in for torchvision's VGG16 weights: random values, only the layers up to ``layer``, and
    a classifier tensor that must be ignored; safetensors or (``.pth``) a torch state dict."""
    torch.manual_seed(seed)
    state = {f"{prefix}{k}": v for k, v in vgg16_features(layer).state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path


@pytest.mark.parametrize("name,prefix", [("vgg.safetensors", "features."), ("vgg.pth", "features."),
                                         ("trunk.safetensors", "")])
def test_local_vgg_weights_load_in_either_format(tmp_path: Path, name: str, prefix: str) -> None:
    path = stand_in_weights(tmp_path / name, prefix=prefix, seed=4)
    torch.manual_seed(4)
    expected = vgg16_features("relu1_2").state_dict()
    loaded = feature_network("relu1_2", path).state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_torchvisions_cache_is_read_without_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails, as on this machine
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    stand_in_weights(tmp_path / "hub" / "checkpoints" / TORCHVISION_FILE, seed=5)
    torch.manual_seed(5)
    expected = vgg16_features("relu1_2").state_dict()
    assert torch.equal(feature_network("relu1_2").state_dict()["2.weight"], expected["2.weight"])


def test_vgg_weights_that_do_not_fit_are_one_clear_error(tmp_path: Path) -> None:
    from mrsynth.errors import InputError

    short = stand_in_weights(tmp_path / "short.safetensors", layer="relu1_2")
    with pytest.raises(InputError, match="relu2_2.*first missing: 5.weight"):
        feature_network("relu2_2", short)
    with pytest.raises(InputError, match="not found"):
        feature_network("relu1_2", tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(InputError, match="cannot read VGG16 weights"):
        feature_network("relu1_2", tmp_path / "junk.pth")


# --- mmGAN: curriculum and imputation contract ------------------------------------------------------------------


def test_curriculum_goes_from_one_missing_to_all_then_mixes() -> None:
    generator = torch.Generator().manual_seed(0)
    iters, most = 120, 3
    first_half = [missing_count(i, iters, most, generator) for i in range(60)]
    assert first_half == sorted(first_half) and set(first_half) == {1, 2, 3}
    assert first_half[:20] == [1] * 20 and first_half[-20:] == [3] * 20
    second_half = [missing_count(i, iters, most, generator) for i in range(60, 120)]
    assert set(second_half) == {1, 2, 3}
    for iteration in (0, 30, 59, 100):
        present = draw_present(8, 4, iteration, iters, most, seed=2)
        assert torch.equal(present, draw_present(8, 4, iteration, iters, most, seed=2))  # resumable
        counts = (~present).sum(1)
        assert counts.min() >= 1 and counts.max() <= most
        if iteration < 60:
            assert (counts == missing_count(iteration, iters, most, torch.Generator())).all()


def test_imputer_feeds_the_zero_filled_set_and_returns_the_target() -> None:
    torch.manual_seed(1)
    spec = ImputationSpec(("t1", "t1c", "t2", "flair"), max_missing=2)
    generator = build_model(ModelConfig(arch="resunet", in_channels=4, out_channels=4, widths=(4, 8, 8, 8),
                                        blocks_per_stage=1)).eval()
    full = torch.rand(2, 4, 16, 16)
    present = spec.scenario("t1c", ["t1", "t2", "flair"])
    assert present == ["t1", "t2", "flair"] and spec.code(present) == "1011"
    with torch.no_grad():
        got = Imputer(generator, spec, present, "t1c")(full[:, [0, 2, 3]])
        mask = torch.tensor([[True, False, True, True]]).expand(2, 4)
        expected = generator(zero_fill(full, mask))[:, 1:2]
    assert torch.equal(got, expected)
    assert torch.equal(impute(full, torch.zeros_like(full), mask)[:, 1], torch.zeros(2, 16, 16))
    assert torch.equal(impute(full, torch.zeros_like(full), mask)[:, 0], full[:, 0])
    with pytest.raises(ValueError, match="at most 2"):
        spec.scenario("t1", ["t2"])


# --- the command line: each framework x {agi-net, resunet}, then synthesize ------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real T1 and T2 crops to synthesize from."""
    root = tmp_path_factory.mktemp("volumes")
    region = (slice(100, 140), slice(100, 140), slice(70, 74))
    return {"t1": crop(DEMO_T1, root / "t1.nii.gz", region), "t2": crop(DEMO_T2, root / "t2.nii.gz", region)}


FRAMEWORK_RUNS = {
    "pgan": (["--scenario", "t1,t2->flair", "--vgg-weights", "{vgg}"], {"adv", "perc"}),
    "medsynth": (["--scenario", "t1,t2->flair"], {"adv", "l2", "gdl"}),
    "mmgan": (["--scenario", "t1,t2,flair->any", "--max-missing", "2"], {"adv"}),
}


@pytest.mark.parametrize("arch", ARCHITECTURES)  # AGI-Net, ResUnet and any other generator build_model offers
@pytest.mark.parametrize("framework", sorted(FRAMEWORK_RUNS))
def test_each_framework_trains_and_its_checkpoint_synthesizes(store: Path, volumes: dict[str, Path], tmp_path: Path,
                                                               framework: str, arch: str) -> None:
    vgg = stand_in_weights(tmp_path / "vgg.safetensors")
    options, parts = FRAMEWORK_RUNS[framework]
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(store), "--arch", arch, "--framework", framework,
                                      *[o.format(vgg=vgg) for o in options], *TINY, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    logs = [e for e in events if e["event"] == "log"]
    assert [e["iteration"] for e in logs] == [1, 2, 3]
    for event in logs:
        assert parts | {"total", "l1", "d"} <= set(event)
        assert all(np.isfinite(event[k]) for k in parts | {"total", "l1", "d"})
    meta = read_metadata(run / "best.safetensors")
    assert meta["model"]["arch"] == arch and meta["training"]["framework"] == framework
    out = tmp_path / "synth-flair.nii.gz"
    synth = CliRunner().invoke(app, ["synthesize", "--t1", str(volumes["t1"]), "--t2", str(volumes["t2"]), "--model",
                                     str(run / "best.safetensors"), "--out", str(out), "--device", "cpu", "--json",
                                     "-q"])
    assert synth.exit_code == 0, synth.output
    record = json.loads(synth.stdout.splitlines()[-1])
    assert record["status"] == "ok" and record["scenario"] == "t1,t2->flair"
    import nibabel as nib

    image = np.asarray(nib.load(str(out)).dataobj)
    assert image.shape == nib.load(str(volumes["t1"])).shape and np.isfinite(image).all() and image.max() > 0
    if framework == "mmgan":
        assert meta["scenario"] == {"inputs": ["t1", "t2", "flair"], "target": "any"}
        assert meta["imputation"]["contrasts"] == ["t1", "t2", "flair"] and meta["imputation"]["max_missing"] == 2
        assert meta["imputation"]["fill"] == 0.0 and "1 = present" in meta["imputation"]["code"]
        assert {"psnr_t1", "psnr_t2", "psnr_flair"} <= set(meta["training"]["val"])
        model, _ = load_checkpoint(run / "best.safetensors")
        assert model(torch.rand(1, 3, 40, 40)).shape == (1, 3, 40, 40)


@pytest.fixture(scope="module")
def any_one_missing(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mmgan checkpoint for any one of t1, t2, flair missing."""
    run = tmp_path_factory.mktemp("mmgan")
    trained = CliRunner().invoke(app, ["train", "--data", str(store), "--arch", "resunet", "--framework", "mmgan",
                                       "--scenario", "t1,t2,flair->any", "--max-missing", "1", *TINY,
                                       "--run-dir", str(run)])
    assert trained.exit_code == 0, trained.output
    return run / "last.safetensors"


def synthesize(*args: object):
    return CliRunner().invoke(app, ["synthesize", *[str(a) for a in args], "--device", "cpu", "--json", "-q"])


def test_mmgan_imputes_another_contrast_with_one_input_missing(any_one_missing: Path, volumes: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """One mmgan checkpoint, three scenarios: the missing contrast is the target when --target is left out."""
    flair = tmp_path / "flair.nii.gz"
    made = synthesize("--t1", volumes["t1"], "--t2", volumes["t2"], "--model", any_one_missing, "--out", flair)
    assert made.exit_code == 0, made.output
    t2 = synthesize("--t1", volumes["t1"], "--flair", flair, "--model", any_one_missing, "--out", tmp_path / "o.nii.gz")
    assert t2.exit_code == 0, t2.output
    assert json.loads(t2.stdout.splitlines()[-1])["scenario"] == "t1,flair->t2"
    two_missing = synthesize("--t1", volumes["t1"], "--target", "t2", "--model", any_one_missing,
                             "--out", tmp_path / "o2.nii.gz")
    assert_one_error_line(two_missing, "at most 1")


def test_registry_entries_can_share_one_mmgan_checkpoint(any_one_missing: Path, volumes: dict[str, Path],
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry names each scenario; one mmgan file serves them all, the inputs given choosing the target."""
    from hub_server import write_registry

    from mrsynth.hub import sha256_file

    weights = tmp_path / "weights"
    weights.mkdir()
    model = weights / "any-one.safetensors"
    model.write_bytes(any_one_missing.read_bytes())
    common = {"arch": "resunet", "file": model.name, "sha256": sha256_file(model), "size": model.stat().st_size,
              "licence": "CC0-1.0", "card": "cards/any-one.md", "default": True}
    write_registry(weights, [{"name": "any-one-flair", "scenario": "t1,t2->flair", **common},
                             {"name": "any-one-t2", "scenario": "t1,flair->t2", **common}])
    monkeypatch.setenv("MRSYNTH_WEIGHTS_DIR", str(weights))
    flair = tmp_path / "out.nii.gz"
    made = synthesize("--t1", volumes["t1"], "--t2", volumes["t2"], "--out", flair)
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout.splitlines()[-1])["scenario"] == "t1,t2->flair"
    t2 = synthesize("--t1", volumes["t1"], "--flair", flair, "--out", tmp_path / "t2.nii.gz")
    assert t2.exit_code == 0, t2.output
    assert json.loads(t2.stdout.splitlines()[-1])["scenario"] == "t1,flair->t2"


# --- errors ------------------------------------------------------------------------------------------------------


def test_pgan_without_weights_offline_is_one_line_exit_2(store: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty torchvision cache and no torchvision (it does not import here; where it would, it is hidden so no
    download can start): one error line naming --vgg-weights, exit 2, and no run left behind."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(store), "--scenario", "t1,t2->flair", "--framework",
                                      "pgan", *TINY, "--run-dir", str(run)])
    line = assert_one_error_line(result, "--vgg-weights", TORCHVISION_FILE, "torch-home")
    assert "torchvision does not import" in line
    assert not (run / "resume.safetensors").exists()


@pytest.mark.parametrize("args,named", [
    (["--scenario", "t1,t2->any"], "--framework mmgan"),
    (["--framework", "mmgan", "--scenario", "t1,t2->flair"], "t1,t1c,t2,flair->any"),
    (["--framework", "mmgan", "--scenario", "t1,t2,flair->any", "--max-missing", "3"], "--max-missing"),
    (["--framework", "mmgan", "--scenario", "t1,t2,flair->any", "--gamma-aug", "0.2"], "--gamma-aug"),
    (["--framework", "mmgan", "--scenario", "t1,t2,flair->any", "--target-median"], "--target-median"),
    (["--framework", "l1", "--scenario", "t1,t2->flair", "--vgg-weights", "x.pth"], "--vgg-weights"),
    (["--framework", "pgan", "--scenario", "t1,t2->flair", "--max-missing", "1"], "--max-missing"),
    (["--framework", "pgan", "--scenario", "t1,t2->flair", "--vgg-layer", "relu9"], "relu9"),
])
def test_framework_option_errors_are_one_line(store: Path, tmp_path: Path, args: list[str], named: str) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(store), *args, "--run-dir", str(tmp_path / "r"),
                                      "--device", "cpu"])
    assert_one_error_line(result, named)


def test_an_mmgan_run_resumes_with_its_own_recipe(store: Path, tmp_path: Path) -> None:
    """--resume without --framework: the run's own framework (mmgan) is used and its ->any scenario accepted."""
    from mrsynth.training.state import load_state

    run = tmp_path / "run"
    base = ["train", "--data", str(store), "--scenario", "t1,t2,flair->any", "--run-dir", str(run),
            *[o for o in TINY if o != "--json"]]
    first = CliRunner().invoke(app, [*base, "--framework", "mmgan", "--arch", "resunet"])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(app, [*base, "--resume", "--iters", "5"])
    assert resumed.exit_code == 0, resumed.output
    state = load_state(run / "resume.safetensors")
    assert state["iteration"] == 5 and state["train_config"]["framework"] == "mmgan"


@pytest.mark.parametrize("framework", ["pix2pix", "pgan", "mmgan", "medsynth"])
def test_the_cost_estimate_counts_each_frameworks_discriminator(framework: str) -> None:
    from mrsynth.training import TrainConfig
    from mrsynth.training.cost import estimate_iteration

    channels = 3 if framework == "mmgan" else 1
    model = ModelConfig(arch="resunet", in_channels=3 if framework == "mmgan" else 2, out_channels=channels,
                        widths=(8, 16, 16, 32))
    alone = estimate_iteration(model, TrainConfig(framework="l1", batch_size=2), (64, 64))
    cost = estimate_iteration(model, TrainConfig(framework=framework, batch_size=2), (64, 64))
    assert cost.flops > alone.flops and cost.memory_bytes > alone.memory_bytes
    if framework == "pgan":  # the perceptual term's VGG16 on top of the pix2pix game
        pix2pix = estimate_iteration(model, TrainConfig(framework="pix2pix", batch_size=2), (64, 64))
        assert cost.flops > pix2pix.flops and cost.memory_bytes > pix2pix.memory_bytes


def test_eval_scores_an_mmgan_checkpoint_on_each_one_missing_scenario(store: Path, any_one_missing: Path) -> None:
    """``mrsynth eval`` runs an imputation checkpoint once per contrast of its set, each from the other two, and
    its figures match the imputer applied directly to the store's slices."""
    from mrsynth.data.dataset import SliceDataset
    from mrsynth.metrics import brain_slices, slice_metrics
    from mrsynth.training.frameworks import _OneMissing

    result = CliRunner().invoke(app, ["eval", "--data", str(store), "-c", str(any_one_missing), "--split", "val",
                                      "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summaries = {r["scenario"]: r for r in map(json.loads, result.stdout.splitlines()) if r["kind"] == "summary"}
    assert sorted(summaries) == ["t1,flair->t2", "t1,t2->flair", "t2,flair->t1"]
    model, meta = load_checkpoint(any_one_missing)
    spec = ImputationSpec.from_dict(meta["imputation"])
    full = SliceDataset(store, "val", ["t1", "t2"], "flair")
    for index, target in enumerate(spec.contrasts):
        pairs = _OneMissing(full, index)
        x = torch.stack([pairs[i][0] for i in range(len(pairs))])
        y = torch.stack([pairs[i][1] for i in range(len(pairs))])[:, 0]
        keep = torch.from_numpy(brain_slices(x))
        with torch.no_grad():
            pred = Imputer(model, spec, spec.scenario(target), target)(x[keep])[:, 0].clamp(0, 1)
        pred = pred * (x[keep] > 0).any(1)  # synthesize's and eval's background rule: 0 where every input is 0
        psnr = float(np.mean(slice_metrics(pred, y[keep])["psnr"]))
        record = summaries[f"{','.join(spec.scenario(target))}->{target}"]
        assert record["n_slices"] == int(keep.sum())
        assert record["psnr"]["mean"] == pytest.approx(psnr, rel=1e-4)


def _train_library(framework: str, tmp_path: Path, device: str, amp: bool) -> None:
    """Four iterations through :func:`mrsynth.training.train` (no store, no CLI), interrupted after two and resumed;
    on CPU the weights equal those of an uninterrupted run bit for bit (mmGAN's curriculum masks are part of that)."""
    import os
    import signal

    from test_train import PhantomPairs, phantom_metadata

    from mrsynth.training import TrainConfig, train
    from mrsynth.training.state import load_state

    metadata = phantom_metadata()
    channels = (2, 1)
    if framework == "mmgan":  # the phantoms' (t1, t2) and target form the contrast set
        metadata["scenario"] = {"inputs": ["t1", "t2", "flair"], "target": "any"}
        channels = (3, 3)
    vgg = str(stand_in_weights(tmp_path / "vgg.safetensors")) if framework == "pgan" else None
    config = TrainConfig(framework=framework, iters=4, batch_size=2, crop=24, amp=amp, val_every=2, save_every=100,
                         vgg_weights=vgg)
    model = ModelConfig(arch="agi-net", in_channels=channels[0], out_channels=channels[1], widths=(8, 16, 16, 32),
                        groups=4)
    data, val = PhantomPairs(4, 32), PhantomPairs(2, 32, seed=1)

    def interrupt(iteration: int, losses: dict) -> None:
        assert all(np.isfinite(v) for v in losses.values()), losses
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: the trainer saves and stops

    stopped = train(model, data, val, tmp_path / "run", config, metadata, device=device, on_iteration=interrupt)
    assert stopped.interrupted and stopped.iteration == 2
    assert stopped.best is not None and np.isfinite(stopped.best["psnr"])
    resumed = train(model, data, val, tmp_path / "run", config, metadata, device=device, resume=True)
    assert resumed.iteration == 4 and all(np.isfinite(v) for v in resumed.losses.values()), resumed.losses
    if device == "cpu":
        train(model, data, val, tmp_path / "straight", config, metadata, device=device)
        a, b = (load_state(tmp_path / name / "resume.safetensors") for name in ("run", "straight"))
        for part in ("generator", "discriminator"):
            assert a[part].keys() == b[part].keys()
            assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), f"{part} differs after resume"


@pytest.mark.parametrize("framework", ["pgan", "mmgan", "medsynth"])
def test_each_framework_trains_and_resumes_through_the_library(framework: str, tmp_path: Path) -> None:
    _train_library(framework, tmp_path, "cpu", amp=False)


@pytest.mark.gpu
@pytest.mark.parametrize("framework", ["pgan", "mmgan", "medsynth"])
def test_each_framework_trains_with_amp_on_cuda(framework: str, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _train_library(framework, tmp_path, "cuda", amp=True)
