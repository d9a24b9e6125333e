"""mrsynth.hub: registry checks, --model resolution, sha256 pins, safe loading, and real Hub traffic on loopback.

The download and upload tests run the command line in a subprocess because huggingface_hub reads HF_ENDPOINT,
HF_HOME and HF_HUB_OFFLINE when it is imported; the far end is tests/hub_server.py on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import LoopbackHub, write_checkpoint, write_registry

from mrsynth.checkpoint import read_metadata
from mrsynth.errors import InputError
from mrsynth.hub import load_registry, parse_hf_spec, resolve_model, sha256_file
from mrsynth.hub.registry import REGISTRY_FILE

REPO = Path(__file__).resolve().parents[1]


def entry(name: str, path: Path, **extra: object) -> dict:
    """A registry entry for a bundled file under the weights folder, pinned to its current bytes."""
    base = {"name": name, "scenario": "t1,t2->pd", "arch": "agi-net", "file": path.name,
            "sha256": sha256_file(path), "size": path.stat().st_size, "licence": "CC-BY-SA-3.0",
            "card": f"cards/{name}.md"}
    return {**base, **extra}


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("MRSYNTH_WEIGHTS_DIR", str(folder))
    return folder


@pytest.fixture
def hub():
    with LoopbackHub(lifetime_s=40) as server:
        yield server


def cli_env(tmp_path: Path, hub: LoopbackHub | None, **extra: str) -> dict[str, str]:
    """The environment of a fresh process: no inherited Hub settings, token or proxy; our cache and endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and not k.lower().endswith("_proxy")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1",
               MRSYNTH_WEIGHTS_DIR=str(tmp_path / "weights"))
    if hub is not None:
        env["HF_ENDPOINT"] = hub.endpoint
    env.update(extra)
    return env


def mrsynth(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrsynth", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def fetch(env: dict[str, str], spec: str) -> subprocess.CompletedProcess:
    return mrsynth(env, "models", "--fetch", spec, "--json")


# ----- registry --------------------------------------------------------------------------------------------------
def test_shipped_registry_is_valid_and_its_bundled_files_match_their_pins(monkeypatch):
    monkeypatch.delenv("MRSYNTH_WEIGHTS_DIR", raising=False)
    entries = load_registry(REPO / "weights" / REGISTRY_FILE)
    for e in entries:
        assert (REPO / "weights" / e["card"]).is_file(), f"{e['name']}: model card missing"
        if e["source"] == "bundled":
            assert resolve_model(e["name"]) == REPO / "weights" / e["file"]


def test_bundled_weights_are_registered_and_within_the_size_budget():
    """Every checkpoint in weights/ ships in the wheel, so an unregistered one (left behind by a rename) is dead
    weight, and the brief caps each bundled file at about 10 MB (fp16 or a light preset)."""
    entries = load_registry(REPO / "weights" / REGISTRY_FILE)
    registered = {e["file"] for e in entries if e["source"] == "bundled"}
    on_disk = {p.name for p in (REPO / "weights").glob("*.safetensors")}
    assert on_disk == registered
    for name in on_disk:
        assert (REPO / "weights" / name).stat().st_size <= 10 * 2**20, name


def test_bundled_weights_together_stay_within_40_mb():
    """The BraTS data issue's budget for every bundled checkpoint together (the wheel carries them all), in decimal
    megabytes: a third light-width model, for instance, does not fit beside the PD and (t1c, t2, flair) -> t1 ones."""
    total = sum(p.stat().st_size for p in (REPO / "weights").glob("*.safetensors"))
    assert total <= 40_000_000, f"{total / 1e6:.2f} MB"


@pytest.mark.parametrize("change, problem", [
    ({"sha256": "abc"}, "sha256 must be 64"),
    ({"scenario": "t1,t3->pd"}, "unknown contrast"),
    ({"scenario": "t1,t2"}, "not written"),
    ({"arch": "unet"}, "arch 'unet'"),
    ({"hub": {"repo": "a/b", "file": "model.safetensors", "revision": "main"}}, "exactly one source"),
    ({"file": "../outside.safetensors"}, "directly in weights/"),
    ({"file": "sub/m.safetensors"}, "directly in weights/"),
    ({"file": "m.pt"}, "directly in weights/"),
    ({"card": "../card.md"}, "cards/NAME.md"),
    ({"colour": "red"}, "unknown key"),
])
def test_registry_errors_name_the_model_and_the_problem(weights, change, problem):
    ckpt = write_checkpoint(weights / "m.safetensors")
    write_registry(weights, [{**entry("m", ckpt), **change}])
    with pytest.raises(InputError, match=problem) as info:
        load_registry()
    assert "registry.toml" in str(info.value) and "'m'" in str(info.value)


def test_registry_requires_hub_entries_to_pin_a_commit(weights):
    ckpt = write_checkpoint(weights / "m.safetensors")
    hub_entry = {k: v for k, v in entry("m", ckpt).items() if k != "file"}
    write_registry(weights, [{**hub_entry, "hub": {"repo": "a/b", "file": "model.safetensors", "revision": "main"}}])
    with pytest.raises(InputError, match="40-hex commit"):
        load_registry()
    write_registry(weights, [{**hub_entry, "hub": {"repo": "a/b", "file": "model.safetensors", "revision": "a" * 40}}])
    assert load_registry()[0]["source"] == "hub"


def test_missing_key_and_duplicate_defaults_are_refused(weights):
    ckpt = write_checkpoint(weights / "m.safetensors")
    write_registry(weights, [{k: v for k, v in entry("m", ckpt).items() if k != "sha256"}])
    with pytest.raises(InputError, match=r"missing key\(s\) \['sha256'\]"):
        load_registry()
    write_registry(weights, [entry("a", ckpt, default=True), entry("b", ckpt, default=True)])
    with pytest.raises(InputError, match="two models are default for t1,t2->pd"):
        load_registry()


def test_default_model_is_chosen_by_input_set_and_target(weights):
    files = {n: write_checkpoint(weights / f"{n}.safetensors", seed=i) for i, n in enumerate(["pd", "pd2", "flair"])}
    write_registry(weights, [
        entry("pd-alt", files["pd2"]),
        entry("pd-main", files["pd"], default=True),
        entry("flair-main", files["flair"], scenario="t1,t2->flair", default=True),
    ])
    assert resolve_model(None, ["t2", "t1"], "pd") == files["pd"]  # inputs match as a set
    assert resolve_model(None, ["t1", "t2"], "flair") == files["flair"]
    with pytest.raises(InputError, match="several default models take t1,t2") as info:
        resolve_model(None, ["t1", "t2"])
    assert "--target" in str(info.value)
    with pytest.raises(InputError, match=r"no registered default model for t1,pd->\?") as info:
        resolve_model(None, ["t1", "pd"])
    assert "mrsynth models" in str(info.value)
    # No model takes exactly t1, t1c, t2 (a BraTS folder without FLAIR): the one default needing only some of them.
    assert resolve_model(None, ["t1", "t1c", "t2"], "flair") == files["flair"]
    assert resolve_model(None, ["t1", "t1c", "t2", "flair"]) == files["pd"]  # flair is given, so not the target
    with pytest.raises(InputError, match="no registered default model"):
        resolve_model(None, ["t1", "t1c", "t2"])  # pd and flair defaults both fit: no silent choice


# ----- local files, pins and pickles -------------------------------------------------------------------------------
def test_bundled_file_with_one_byte_changed_is_refused(weights):
    ckpt = write_checkpoint(weights / "m.safetensors")
    write_registry(weights, [entry("m", ckpt)])
    assert resolve_model("m") == ckpt
    data = bytearray(ckpt.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight: the header still parses, only the checksum can tell
    ckpt.write_bytes(bytes(data))
    read_metadata(ckpt)  # still looks like a fine checkpoint
    with pytest.raises(InputError, match="checksum failed, file refused: sha256") as info:
        resolve_model("m")
    assert str(ckpt) in str(info.value)
    ckpt.write_bytes(bytes(data[:-1]))
    with pytest.raises(InputError, match="size .* differs from the pinned"):
        resolve_model("m")


def test_local_paths(tmp_path):
    ckpt = write_checkpoint(tmp_path / "local.safetensors")
    assert resolve_model(str(ckpt)) == ckpt
    with pytest.raises(InputError, match="no such registered model or checkpoint file"):
        resolve_model(str(tmp_path / "absent.safetensors"))
    with pytest.raises(InputError, match="is a folder"):
        resolve_model(str(tmp_path))
    for suffix in (".pt", ".pth"):
        trusted = tmp_path / f"model{suffix}"
        trusted.write_bytes(b"\x80\x04N.")
        with pytest.raises(InputError, match="pickled checkpoints are never loaded") as info:
            resolve_model(str(trusted))
        assert "safetensors.torch.save_file" in str(info.value)


class _Payload:
    """Unpickling this creates the file ``path``: proof of code execution that a test can look for."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_disguised_as_safetensors_is_refused_without_running(tmp_path, writer):
    import torch

    from mrsynth.checkpoint import load_checkpoint

    control, marker = tmp_path / "control-ran", tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.exists(), "the payload must really execute when unpickled, or this test proves nothing"

    fake = tmp_path / "model.safetensors"
    if writer == "pickle":
        fake.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    else:
        torch.save({"state_dict": _Payload(marker)}, fake)
    assert resolve_model(str(fake)) == fake
    with pytest.raises(InputError, match="not an mrsynth safetensors checkpoint"):
        load_checkpoint(resolve_model(str(fake)))
    assert not marker.exists()


def test_hf_spec_forms():
    assert parse_hf_spec("hf://lab/m") == {"repo_id": "lab/m", "repo_type": "model",
                                           "filename": "model.safetensors", "revision": "main"}
    spec = parse_hf_spec("hf://lab/m/sub/x.safetensors@v2")
    assert (spec["filename"], spec["revision"]) == ("sub/x.safetensors", "v2")
    spec = parse_hf_spec("hf://lab/m@refs/pr/3/x.safetensors")  # huggingface_hub's own order also works
    assert (spec["filename"], spec["revision"]) == ("x.safetensors", "refs/pr/3")
    for bad in ("hf://lab", "hf://lab/m@", "hf://la b/m"):
        with pytest.raises(InputError):
            parse_hf_spec(bad)
    with pytest.raises(InputError, match="pickled"):
        resolve_model("hf://lab/m/pytorch_model.pt")


# ----- the Hub on loopback -------------------------------------------------------------------------------------------
def register_hub_model(tmp_path: Path, hub, seed: int) -> tuple[Path, str]:
    """A checkpoint committed to the loopback Hub as lab/agi-pd and registered as "lab-pd", pinned to that commit."""
    ckpt = write_checkpoint(tmp_path / "src" / "model.safetensors", seed=seed)
    commit = hub.commit("lab/agi-pd", {"model.safetensors": ckpt.read_bytes()})
    hub_entry = {k: v for k, v in entry("lab-pd", ckpt).items() if k != "file"}
    write_registry(tmp_path / "weights", [{**hub_entry, "hub": {"repo": "lab/agi-pd", "file": "model.safetensors",
                                                                "revision": commit}}])
    return ckpt, commit


def test_download_then_cache_hit_with_the_server_stopped(tmp_path, hub):
    ckpt, commit = register_hub_model(tmp_path, hub, seed=3)
    env = cli_env(tmp_path, hub)

    first = mrsynth(env, "models", "--fetch", "lab-pd", "--fetch", "hf://lab/agi-pd", "--json")
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["model"], r["pinned"]) for r in records] == [("lab-pd", True), ("hf://lab/agi-pd", False)]
    for record in records:
        assert record["sha256"] == sha256_file(ckpt)
        assert Path(record["path"]).is_relative_to(tmp_path / "hf" / "hub")  # HF_HOME honoured
        assert Path(record["path"]).read_bytes() == ckpt.read_bytes()
    gets = [r for r in hub.requests if r["method"] == "GET"]
    assert [r["path"] for r in gets] == ["/lab/agi-pd/resolve/" + commit + "/model.safetensors"]  # one download

    hub.stop()
    again = mrsynth(env, "models", "--fetch", "lab-pd", "--fetch", "hf://lab/agi-pd", "--json")
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["path"] for line in again.stdout.splitlines()] == [r["path"] for r in records]


def test_offline_with_an_empty_cache_is_a_clear_usage_error(tmp_path, hub):
    hub.commit("lab/agi-pd", {"model.safetensors": b"x" * 64})
    result = fetch(cli_env(tmp_path, hub, HF_HUB_OFFLINE="1"), "hf://lab/agi-pd")
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: hf://lab/agi-pd: not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE=1" in result.stderr and result.stderr.count("\n") == 1
    assert hub.requests == []  # offline means offline


def test_tampered_download_is_refused_evicted_and_fetched_again(tmp_path, hub):
    ckpt, commit = register_hub_model(tmp_path, hub, seed=4)
    env = cli_env(tmp_path, hub)
    cached = Path(json.loads(fetch(env, "lab-pd").stdout)["path"])
    blob = cached.resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))

    refused = fetch(env, "lab-pd")
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"error: hf://lab/agi-pd/model.safetensors@{commit}: checksum failed" in refused.stderr
    assert not cached.exists() and not blob.exists()  # the bad bytes are gone, nobody can load them

    again = fetch(env, "lab-pd")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sha256"] == sha256_file(ckpt)
    assert len([r for r in hub.requests if r["method"] == "GET"]) == 2


def test_push_uploads_files_that_download_back_identical(tmp_path):
    import torch

    from mrsynth.checkpoint import load_checkpoint, save_checkpoint
    from mrsynth.models import build_model, preset

    torch.manual_seed(0)
    model = build_model(preset("tiny"))
    ckpt = save_checkpoint(tmp_path / "run" / "best.safetensors", model, {
        "scenario": {"inputs": ["t1", "t2"], "target": "pd"}, "training": {"dataset": "IXI", "licence": "CC-BY-SA-3.0"},
        "metrics": {"psnr": 27.5, "ssim": 90.25, "mae": 1.5, "split": "IXI test"}}, dtype="float16")
    with LoopbackHub(lifetime_s=40, write_token="hf_write_secret") as hub:
        env = cli_env(tmp_path, hub)
        denied = mrsynth(env, "push", str(ckpt), "--repo", "lab/tiny-pd")
        assert denied.returncode == 2 and "HTTP 401" in denied.stderr and "HF_TOKEN" in denied.stderr

        pushed = mrsynth({**env, "HF_TOKEN": "hf_write_secret"}, "push", str(ckpt), "--repo", "lab/tiny-pd",
                         "--private", "--json")
        assert pushed.returncode == 0, pushed.stderr
        result = json.loads(pushed.stdout)
        assert hub.repo("lab/tiny-pd")["private"] is True

        other = save_checkpoint(tmp_path / "run" / "other.safetensors", model, {
            "scenario": {"inputs": ["t1", "t2"], "target": "pd"}, "training": {"dataset": "IXI"}})
        branch = mrsynth(env, "push", str(other), "--repo", "lab/tiny-pd", "--revision", "dev", "--license",
                         "CC-BY-SA-3.0", "--token", "hf_write_secret", "-q")
        assert branch.returncode == 0 and branch.stderr == "" and branch.stdout == ""
        commits = [r for r in hub.requests if r["path"].startswith("/api/models/lab/tiny-pd/commit/")]
        assert [r["authorization"] for r in commits] == ["Bearer hf_write_secret"] * 2

        script = ("import json, sys; from huggingface_hub import hf_hub_download; "
                  "print(json.dumps({f + '@' + r: hf_hub_download('lab/tiny-pd', f, revision=r) for f, r in "
                  "[('model.safetensors', sys.argv[1]), ('metadata.json', 'main'), ('README.md', 'main'), "
                  "('model.safetensors', 'dev')]}))")
        got = subprocess.run([sys.executable, "-c", script, result["commit"]], env=env, capture_output=True,
                             text=True, timeout=60)
        assert got.returncode == 0, got.stderr
    paths = {f.split("@")[0] if not f.endswith("@dev") else "dev": Path(p) for f, p in json.loads(got.stdout).items()}
    assert paths["dev"].read_bytes() == other.read_bytes() != ckpt.read_bytes()
    assert result["files"] == ["model.safetensors", "metadata.json", "README.md"]
    assert paths["model.safetensors"].read_bytes() == ckpt.read_bytes()
    assert result["sha256"] == sha256_file(paths["model.safetensors"]) == sha256_file(ckpt)

    meta = json.loads(paths["metadata.json"].read_text())
    assert meta == {**read_metadata(ckpt), "file": "model.safetensors", "sha256": result["sha256"],
                    "size": ckpt.stat().st_size}

    from huggingface_hub import ModelCard

    card = ModelCard.load(paths["README.md"])
    assert card.data.license == "cc-by-sa-3.0"
    assert {"mri", "image-synthesis", "agi-net"} <= set(card.data.tags)
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("psnr", 27.5), ("ssim", 90.25), ("mae", 1.5)}
    assert result["sha256"] in card.text

    loaded, _ = load_checkpoint(paths["model.safetensors"])
    x = torch.rand(1, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = build_model(preset("tiny"))
        reference.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                   for k, v in model.state_dict().items()})
        assert torch.equal(loaded.eval()(x), reference.eval()(x))


def test_push_refuses_a_pickle_before_any_request(tmp_path, hub):
    marker = tmp_path / "payload-ran"
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(pickle.dumps(_Payload(marker)))
    result = mrsynth(cli_env(tmp_path, hub), "push", str(fake), "--repo", "lab/x")
    assert result.returncode == 2 and "not an mrsynth safetensors checkpoint" in result.stderr
    assert hub.requests == [] and not marker.exists()
