"""The slice store's reader API and the torch SliceDataset, on a small store written by the test."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from mrsynth.data.dataset import SliceDataset
from mrsynth.data.store import (
    STORE_FORMAT,
    STORE_KIND,
    SliceStore,
    remove_temporaries,
    subject_file,
    write_manifest,
    write_subject,
)
from mrsynth.errors import InputError

CONTRASTS = ["t1", "t2", "pd"]


@pytest.fixture
def store(tmp_path):
    """Three subjects (train, train, test) of random slices, one subject assigned but not finished."""
    rng = np.random.default_rng(7)
    subjects, arrays = {}, {}
    for name, n, first in (("S1", 4, 10), ("S2", 3, 40), ("S3", 2, 5)):
        arrays[name] = rng.random((n, len(CONTRASTS), 16, 12)).astype(np.float16)
        write_subject(tmp_path, name, arrays[name])
        subjects[name] = {"n_slices": n, "slice_indices": list(range(first, first + n))}
    write_manifest(tmp_path, {
        "kind": STORE_KIND, "format": STORE_FORMAT, "contrasts": CONTRASTS, "slice_size": [16, 12],
        "split": {"S1": "train", "S2": "train", "S3": "test", "S4": "val"}, "subjects": subjects,
    })
    return tmp_path, arrays


def test_store_reader_api(store):
    path, arrays = store
    s = SliceStore(path)
    assert s.contrasts == CONTRASTS and s.slice_size == (16, 12) and s.channel("pd") == 2
    assert s.subjects() == ["S1", "S2", "S3"]  # S4 is in the split but not finished
    assert s.subjects("train") == ["S1", "S2"] and s.subjects("val") == [] and s.subjects("test") == ["S3"]
    slices = s.slices("S2")
    assert isinstance(slices, np.memmap) and not slices.flags.writeable
    np.testing.assert_array_equal(slices, arrays["S2"])
    assert s.slice_indices("S2") == [40, 41, 42]
    with pytest.raises(InputError, match="no 'flair' contrast"):
        s.channel("flair")
    with pytest.raises(InputError, match="not in the store"):
        s.slices("S4")
    with pytest.raises(InputError, match="unknown split"):
        s.subjects("holdout")


def test_not_a_store(tmp_path):
    with pytest.raises(InputError, match="not a slice store"):
        SliceStore(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(InputError, match="not an mrsynth slice store"):
        SliceStore(tmp_path)


def test_manifest_is_valid_sorted_json_and_writes_leave_no_temporaries(store):
    path, _ = store
    text = (path / "manifest.json").read_text()
    manifest = json.loads(text)
    assert list(manifest["subjects"]) == ["S1", "S2", "S3"]
    write_manifest(path, manifest)
    assert (path / "manifest.json").read_text() == text  # same content, same bytes
    assert sorted(p.name for p in (path / "subjects").iterdir()) == ["S1.npy", "S2.npy", "S3.npy"]
    stale = path / "subjects" / ".S9.npy.abc123.part.npy"  # what a killed writer leaves behind
    stale.write_bytes(b"partial")
    remove_temporaries(path)
    assert not stale.exists() and subject_file(path, "S1").exists()


def test_dataset_pairs_inputs_and_target_in_the_asked_order(store):
    path, arrays = store
    ds = SliceDataset(path, split="train", inputs=["pd", "t1"], target="t2")
    assert len(ds) == 7 and ds.index[4] == ("S2", 0)
    x, y = ds[5]
    assert x.dtype == torch.float32 and x.shape == (2, 16, 12) and y.shape == (1, 16, 12)
    expected = arrays["S2"][1].astype(np.float32)
    np.testing.assert_array_equal(x.numpy(), expected[[2, 0]])
    np.testing.assert_array_equal(y.numpy()[0], expected[1])


def test_float32_store_samples_are_writable_copies(tmp_path):
    """A float32 store needs no dtype conversion, so a sample could silently be a read-only view of the map."""
    array = np.random.default_rng(3).random((2, len(CONTRASTS), 16, 12)).astype(np.float32)
    write_subject(tmp_path, "S1", array)
    write_manifest(tmp_path, {"kind": STORE_KIND, "format": STORE_FORMAT, "contrasts": CONTRASTS, "slice_size": [16, 12],
                              "split": {"S1": "train"}, "subjects": {"S1": {"n_slices": 2, "slice_indices": [0, 1]}}})
    dataset = SliceDataset(tmp_path, split="train", inputs=["t1", "t2"], target="pd")
    x, y = dataset[1]
    memory_map = dataset._maps["S1"]
    assert not np.shares_memory(x.numpy(), memory_map) and not np.shares_memory(y.numpy(), memory_map)
    y += 1.0  # on a view of the read-only map this would crash the process
    np.testing.assert_array_equal(y.numpy()[0], array[1, 2] + 1.0)
    np.testing.assert_array_equal(np.load(subject_file(tmp_path, "S1")), array)


def test_dataset_slice_filter_sees_original_axial_indices(store):
    path, _ = store
    seen = []

    def below_42(subject: str, axial: int) -> bool:
        seen.append((subject, axial))
        return axial < 42

    ds = SliceDataset(SliceStore(path), split="train", inputs=["t1", "t2"], target="pd", slice_filter=below_42)
    assert ("S2", 42) in seen and ("S1", 13) in seen
    assert ds.index == [("S1", 0), ("S1", 1), ("S1", 2), ("S1", 3), ("S2", 0), ("S2", 1)]


def test_dataset_pickles_without_open_maps_and_loads_in_workers(store):
    path, arrays = store
    ds = SliceDataset(path, split=None, inputs=["t1", "t2"], target="pd")
    ds[0]
    assert ds._maps  # opened lazily on first use
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._maps == {} and len(clone) == 9
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    targets = torch.cat([y for _, y in batches])[:, 0].numpy()
    expected = np.concatenate([arrays[s][:, 2] for s in ("S1", "S2", "S3")]).astype(np.float32)
    np.testing.assert_array_equal(targets, expected)


def test_dataset_rejects_target_among_inputs(store):
    path, _ = store
    with pytest.raises(InputError, match="also an input"):
        SliceDataset(path, inputs=["t1", "t2"], target="t2")
