"""scripts/zoomed_validation.py: the store's padding is stripped exactly, and inputs and target are zoomed alike
(a target that is a linear function of the inputs stays one at every zoom, so the regression fits it exactly)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrsynth.data.store import SliceStore
from store_helpers import write_padded_store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "zoomed_validation.py"
SIZE = (16, 12)  # (H, W) of the store's slices; the scan's own slices are 10 x 9


@pytest.fixture()
def store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(4)
    t1t2 = rng.uniform(0.1, 0.9, size=(20, 2, 10, 9)).astype(np.float32)
    pd = 0.1 + 0.3 * t1t2[:, 0] + 0.5 * t1t2[:, 1]  # linear: bilinear zooming keeps the relation exact
    head = np.concatenate([t1t2, pd[:, None]], axis=1)
    padded = np.zeros((20, 3, *SIZE), dtype=np.float32)
    padded[:, :, 3:13, 1:10] = head
    path = write_padded_store(tmp_path / "store", padded, list(range(20)), shape=[20, 10, 9], inplane_offset=[-3, -1])
    return path, head


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_padding_is_stripped_exactly(store) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    from zoomed_validation import unpadded, zoom_out

    path, head = store
    slices, axial = unpadded(SliceStore(path), "subj")
    np.testing.assert_array_equal(slices, head)
    assert axial == list(range(20))
    np.testing.assert_allclose(zoom_out(slices, 1.0), slices, rtol=0, atol=1e-6)
    small = zoom_out(slices, 0.5)
    assert not np.allclose(small, slices)


def test_the_regression_stays_exact_at_every_zoom(store) -> None:
    path, _ = store
    done = run_script("--data", str(path), "--scenario", "t1,t2->pd", "--fit-slices", "0:12", "--val-slices", "12:20",
                      "--scales", "1,0.6,0.3", "--threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["scale"], r["model"]) for r in rows] == [(s, "regression") for s in (1.0, 0.6, 0.3)]
    assert all(r["n_slices"] == 8 and r["mae"] < 1e-3 for r in rows)  # MAE x100: exact up to float32


def test_angles_rotate_inputs_and_target_alike(store) -> None:
    """Every angle at every zoom; the linear target stays exactly predictable when inputs and target turn together,
    and a half turn of a (non-square) slice is ``np.rot90(..., 2)``."""
    sys.path.insert(0, str(SCRIPT.parent))
    from zoomed_validation import unpadded, zoom_out

    path, head = store
    slices, _ = unpadded(SliceStore(path), "subj")
    np.testing.assert_allclose(zoom_out(slices, 1.0, 180.0), np.rot90(slices, 2, axes=(2, 3)), rtol=5e-5, atol=0)
    done = run_script("--data", str(path), "--scenario", "t1,t2->pd", "--fit-slices", "0:12", "--val-slices", "12:20",
                      "--scales", "1,0.6", "--angles", "0,25,-40", "--threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["scale"], r["angle"]) for r in rows] == [(s, a) for s in (1.0, 0.6) for a in (0.0, 25.0, -40.0)]
    assert all(r["model"] == "regression" and r["mae"] < 1e-3 for r in rows)
    bad = run_script("--data", str(path), "--scenario", "t1,t2->pd", "--fit-slices", "0:12", "--val-slices", "12:20",
                     "--angles", "0,ten")
    assert bad.returncode == 2 and "--angles" in bad.stderr and "ten" in bad.stderr and not bad.stdout


def test_overlapping_slices_are_refused(store) -> None:
    path, _ = store
    done = run_script("--data", str(path), "--scenario", "t1,t2->pd", "--fit-slices", "0:12", "--val-slices", "10:20")
    assert done.returncode == 2 and "not the same ones" in done.stderr and not done.stdout


def test_tta_rows_score_the_mirror_averaged_model(store, tmp_path: Path) -> None:
    from synth_helpers import checkpoint

    path, _ = store
    model = checkpoint(tmp_path / "m.safetensors", scenario={"inputs": ["t1", "t2"], "target": "pd"},
                       slice_size=[16, 12])
    done = run_script("--data", str(path), "--scenario", "t1,t2->pd", "--fit-slices", "0:12", "--val-slices", "12:20",
                      "--scales", "1,0.5", "--checkpoint", str(model), "--tta", "--threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    rows = {(r["scale"], r["model"]): r for r in map(json.loads, done.stdout.splitlines())}
    name = f"{tmp_path.name}/m.safetensors"
    assert set(rows) == {(s, m) for s in (1.0, 0.5) for m in ("regression", name, f"{name} --tta")}
    assert all(rows[(s, name)]["psnr"] != rows[(s, f"{name} --tta")]["psnr"] for s in (1.0, 0.5))
