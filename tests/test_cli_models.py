"""``mrsynth models``: the registry as a table on stderr or JSON lines on stdout, and ``--fetch`` checks."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hub_server import write_checkpoint, write_registry
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.hub import sha256_file


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("MRSYNTH_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps to 80 columns when not on a terminal
    folder.mkdir()
    return folder


def two_models(weights: Path) -> list[dict]:
    pd = write_checkpoint(weights / "pd.safetensors", seed=1)
    entries = [
        {"name": "agi-net-ixi-t1t2-pd", "scenario": "t1,t2->pd", "arch": "agi-net", "file": "pd.safetensors",
         "sha256": sha256_file(pd), "size": pd.stat().st_size, "licence": "CC-BY-SA-3.0",
         "card": "cards/pd.md", "default": True, "metrics": {"psnr": 27.25, "ssim": 90.5, "split": "IXI test"}},
        {"name": "resunet-brats-flair", "scenario": "t1,t1c,t2->flair", "arch": "resunet",
         "hub": {"repo": "lab/resunet-flair", "file": "model.safetensors", "revision": "0123456789" * 4},
         "sha256": "ab" * 32, "size": 2_500_000, "licence": "CC-BY-4.0", "card": "cards/flair.md"},
    ]
    write_registry(weights, entries)
    return entries


def test_table_goes_to_stderr(weights):
    two_models(weights)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and result.stdout == ""
    for text in ("agi-net-ixi-t1t2-pd", "t1,t2->pd", "bundled: pd.safetensors", "27.25", "90.50",
                 "resunet-brats-flair", "hf://lab/resunet-flair/model.safetensors@01234567", "2.5", "yes"):
        assert text in result.stderr, text
    assert CliRunner().invoke(app, ["models", "-q"]).stderr == ""


def test_narrow_terminal_drops_columns_not_model_names(weights, monkeypatch):
    two_models(weights)
    monkeypatch.setenv("COLUMNS", "80")
    table = CliRunner().invoke(app, ["models"]).stderr
    assert "agi-net-ixi-t1t2-pd" in table and "resunet-brats-flair" in table and "t1,t1c,t2->flair" in table
    assert "27.25" in table and "90.50" in table  # PSNR and SSIM stay
    assert "hf://lab" not in table and "CC-BY-4.0" not in table  # the widest, least needed columns go
    assert max(len(line) for line in table.splitlines()) <= 80


def test_the_bundled_registry_fits_an_80_column_terminal_with_every_name_whole(monkeypatch):
    from mrsynth.hub import load_registry

    monkeypatch.setenv("COLUMNS", "80")
    table = CliRunner().invoke(app, ["models"]).stderr
    for entry in load_registry():
        assert entry["name"] in table and entry["scenario"] in table
    assert "…" not in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_json_is_one_line_per_model(weights):
    entries = two_models(weights)
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in records] == [e["name"] for e in entries]
    assert records[0]["inputs"] == ["t1", "t2"] and records[0]["target"] == "pd" and records[0]["default"] is True
    assert records[1]["source"] == "hub" and records[1]["hub"]["revision"] == "0123456789" * 4
    assert records[1]["default"] is False and records[1]["metrics"] == {}


def test_empty_and_broken_registries(weights):
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "no models registered" in CliRunner().invoke(app, ["models"]).stderr
    (weights / "registry.toml").write_text("[[model]]\nname = 'x'\n")
    broken = CliRunner().invoke(app, ["models"])
    assert broken.exit_code == 2 and "Traceback" not in broken.stderr
    assert broken.stderr.startswith(f"error: {weights / 'registry.toml'}: model 'x': missing key(s)")


def test_fetch_reports_path_and_checksum(weights):
    two_models(weights)
    result = CliRunner().invoke(app, ["models", "--fetch", "agi-net-ixi-t1t2-pd", "--json"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["path"] == str(weights / "pd.safetensors") and record["pinned"] is True
    assert record["scenario"] == "t1,t2->pd" and record["sha256"] == sha256_file(weights / "pd.safetensors")
    human = CliRunner().invoke(app, ["models", "--fetch", "agi-net-ixi-t1t2-pd"])
    assert "sha256 matches the registry pin" in human.stderr and human.stdout == ""


def test_fetch_refuses_a_disguised_pickle_without_running_it(weights, tmp_path):
    marker = tmp_path / "payload-ran"
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    result = CliRunner().invoke(app, ["models", "--fetch", str(fake)])
    assert result.exit_code == 2 and "not an mrsynth safetensors checkpoint" in result.stderr
    assert not marker.exists()


def test_help_has_examples():
    for command in ("models", "push"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: mrsynth" in result.stdout


class _Payload:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))
