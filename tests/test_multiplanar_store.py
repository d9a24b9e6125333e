"""scripts/multiplanar_store.py: the coronal and sagittal planes are exact cuts of the training slab, nothing from
outside the slab reaches the training subjects, and the result is a store the trainer reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrsynth.data.store import SliceStore
from store_helpers import write_padded_store

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "multiplanar_store.py"
SIZE = (16, 12)  # (H, W) of the store's slices


@pytest.fixture()
def axial_store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A store with one subject: 20 axial slices (indices 5..24) of a random (z, 3, 10, 9) head, padded to SIZE."""
    rng = np.random.default_rng(0)
    head = rng.uniform(0.1, 1.0, size=(20, 3, 10, 9)).astype(np.float32)
    padded = np.zeros((20, 3, *SIZE), dtype=np.float32)
    padded[:, :, 3:13, 1:10] = head
    store = write_padded_store(tmp_path / "axial", padded, list(range(5, 25)))
    return store, padded


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_planes_are_cuts_of_the_slab_only(axial_store, tmp_path):
    store, volume = axial_store
    out = tmp_path / "mp"
    done = run_script("--data", str(store), "--subject", "subj", "--train-slab", "10:18", "--val-slab", "20:25",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    mp = SliceStore(out)
    assert mp.subjects("train") == ["subj_axial", "subj_coronal", "subj_sagittal"]
    assert mp.subjects("val") == ["subj_val"]

    slab = volume[5:13]  # axial indices 10..17
    np.testing.assert_array_equal(mp.slices("subj_axial"), slab)
    assert mp.slice_indices("subj_axial") == list(range(10, 18))
    np.testing.assert_array_equal(mp.slices("subj_val"), volume[15:20])

    coronal, sagittal = np.asarray(mp.slices("subj_coronal")), np.asarray(mp.slices("subj_sagittal"))
    assert coronal.shape == (SIZE[0], 3, *SIZE) and sagittal.shape == (SIZE[1], 3, *SIZE)
    y, x = 7, 4
    top = (SIZE[0] - 8) // 2  # coronal: 8 axial rows centred in H
    np.testing.assert_array_equal(coronal[y][:, top : top + 8, :], slab[:, :, y, :].transpose(1, 0, 2))
    left = (SIZE[1] - 8) // 2  # sagittal: 8 axial columns centred in W
    np.testing.assert_array_equal(sagittal[x][:, :, left : left + 8], slab[:, :, :, x].transpose(1, 2, 0))
    # every training voxel value comes from the slab: the total mass of each plane equals the slab's
    for plane in (coronal, sagittal):
        np.testing.assert_allclose(plane.sum(dtype=np.float64), slab.sum(dtype=np.float64), rtol=1e-9)


def test_result_feeds_the_trainer_data(axial_store, tmp_path):
    from mrsynth.training.data import store_datasets

    store, _ = axial_store
    out = tmp_path / "mp"
    assert run_script("--data", str(store), "--subject", "subj", "--train-slab", "8:20", "--out", str(out)).returncode == 0
    _, train_set, val_set = store_datasets(str(out), ["t1", "t2"], "pd")
    x, y = train_set[0]
    assert x.shape == (2, *SIZE) and y.shape == (1, *SIZE)
    assert len(train_set) > 20 and val_set is None


def test_plane_that_does_not_fit_is_refused(axial_store, tmp_path):
    store, _ = axial_store
    # sagittal planes are (H, slab): 13 slices do not fit the 12-pixel width; nothing is written
    done = run_script("--data", str(store), "--subject", "subj", "--train-slab", "5:18", "--out", str(tmp_path / "mp"))
    assert done.returncode == 2 and "does not fit" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "mp").exists()
