"""End-to-end ``mrsynth preprocess``: the real BraTS-style pair, a synthetic IXI layout with a moved T1,
interruption and resume, and subjects that fail for the reasons real datasets have."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from mrsynth.cli.app import app
from mrsynth.data.splits import assign_split
from mrsynth.data.store import SliceStore, read_manifest
from mrsynth.errors import InputError

BRATS_ARGS = ["preprocess", "--dataset", "brats", "--out", "store", "--split", "1,1,0", "--seed", "3", "-q"]


def run_cli(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrsynth", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kwargs)


def store_bytes(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def brats_store(tmp_path_factory) -> Path:
    """An uninterrupted run on the two real BraTS-style subjects (with 2 workers), the reference of the tests."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brats-style"
    if not root.is_dir():
        pytest.skip(f"real sample data not found at {root}")
    cwd = tmp_path_factory.mktemp("uninterrupted")
    done = run_cli([*BRATS_ARGS, "--root", str(root), "--workers", "2"], cwd)
    assert done.returncode == 0, done.stderr
    return cwd / "store"


# --- acceptance 1: the real BraTS-style pair -------------------------------------------------------------------

def test_brats_store_holds_both_subjects_normalised_on_240_grid(brats_store):
    store = SliceStore(brats_store)
    manifest = store.manifest
    root = Path(manifest["root"])
    assert store.subjects() == ["TCGA-DU-7294", "TCGA-FG-6692"]
    assert store.contrasts == ["t1", "t1c", "t2", "flair"] and store.slice_size == (240, 240)
    expected_split, _ = assign_split(store.subjects(), "1,1,0", seed=3)
    assert manifest["split"] == expected_split and sorted(expected_split.values()) == ["train", "val"]
    assert store.subjects("train") != store.subjects("val")
    assert manifest["normalization"] == {"method": "percentile", "percentile": 99.5, "over": "nonzero", "clip": [0.0, 1.0]}

    subject = "TCGA-FG-6692"
    slices = store.slices(subject)
    entry = manifest["subjects"][subject]
    assert slices.shape == (entry["n_slices"], 4, 240, 240) and slices.dtype == np.float16
    assert float(slices.min()) == 0.0 and float(slices.max()) == 1.0

    raw = {c: sitk.GetArrayFromImage(sitk.ReadImage(str(root / entry["files"][c]))).astype(np.float64)
           for c in store.contrasts}  # BraTS files are stored in the canonical LPS order already
    for c in store.contrasts:  # constants recomputed from the raw file: 99.5th percentile of voxels > 0
        recorded = entry["normalization"][c]
        assert recorded["min"] == 0.0
        assert recorded["max"] == pytest.approx(np.percentile(raw[c][raw[c] > 0], 99.5), rel=1e-9)
    mid = entry["slice_indices"].index(77)
    flair = np.clip(raw["flair"][77] / entry["normalization"]["flair"]["max"], 0, 1)
    np.testing.assert_allclose(slices[mid, store.channel("flair")].astype(np.float64), flair, atol=5e-4)

    brain = np.any([raw[c] > 0 for c in store.contrasts], axis=0).mean(axis=(1, 2))
    assert entry["slice_indices"] == [int(z) for z in np.flatnonzero(brain >= 0.01)]


# --- acceptance 3: interruption, resume, determinism -----------------------------------------------------------

def _manifest_subjects(store: Path) -> dict:
    """The subjects the store's manifest lists as finished (none while it does not exist yet; it is written
    atomically, so it is never seen half-written)."""
    try:
        return read_manifest(store)["subjects"]
    except InputError:
        return {}


def test_killed_then_resumed_run_equals_uninterrupted_run(brats_store, tmp_path):
    root = str(Path(SliceStore(brats_store).manifest["root"]))
    args = [*BRATS_ARGS, "--root", root, "--workers", "1"]
    process = subprocess.Popen([sys.executable, "-m", "mrsynth", *args], cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subjects = tmp_path / "store" / "subjects"
    deadline = time.monotonic() + 120
    # Kill once the first subject is *finished*: its .npy and its manifest entry both written (a kill between the
    # two rightly makes the resumed run redo that subject, which this test would misread as not resuming).
    while not _manifest_subjects(tmp_path / "store"):
        assert process.poll() is None and time.monotonic() < deadline, "run ended before writing a subject"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the whole process group, as a hard kill would
    process.wait()
    finished = [p.name for p in subjects.glob("*.npy") if not p.name.startswith(".")]
    assert len(finished) == 1, "the kill came too late to test anything"

    resumed = run_cli([*args, "--json"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    statuses = {r["subject"]: r["status"] for r in map(json.loads, resumed.stdout.splitlines()) if "status" in r}
    assert sorted(statuses.values()) == ["done", "processed"]  # the first subject was not redone

    interrupted, reference = store_bytes(tmp_path / "store"), store_bytes(brats_store)
    assert sorted(interrupted) == sorted(reference) == ["manifest.json", "subjects/TCGA-DU-7294.npy",
                                                        "subjects/TCGA-FG-6692.npy"]
    for name in ("subjects/TCGA-DU-7294.npy", "subjects/TCGA-FG-6692.npy"):
        assert interrupted[name] == reference[name], name
    # manifests are identical but for the recorded command line (other --workers, --json, and --root spelled as
    # given: the fixture may reach the data through a symbolic link, the resumed run through its resolved path)
    ours, theirs = (json.loads(m["manifest.json"]) for m in (interrupted, reference))
    commands = [ours.pop("command"), theirs.pop("command")]
    assert all(c.startswith("mrsynth preprocess --dataset brats") for c in commands)
    assert ours == theirs


def test_resume_with_other_settings_is_refused(brats_store, tmp_path):
    root = SliceStore(brats_store).manifest["root"]
    result = CliRunner().invoke(app, ["preprocess", "--dataset", "brats", "--root", root, "--out", str(brats_store),
                                      "--split", "0,1,1", "-q"])
    assert result.exit_code == 2
    assert "different settings (split)" in result.stderr and "Traceback" not in result.output


# --- acceptance 2 and 4: a synthetic IXI layout -----------------------------------------------------------------

BLOBS = np.array([(12, -15, 8), (-18, 10, -5), (5, 25, 12), (-8, -30, -10), (20, 5, -15), (-5, 0, 20)], float)
BLOB_SIZE = np.array([7, 9, 6, 8, 10, 6], float)
WEIGHTS = {"t1": [0.9, -0.4, 0.6, -0.5, 0.3, 0.8], "t2": [-0.5, 0.9, -0.3, 0.7, 0.5, -0.4],
           "pd": [0.3, 0.6, 0.4, -0.2, 0.6, 0.2]}
BASE = {"t1": 0.8, "t2": 0.5, "pd": 0.7}


def rotation(degrees_x: float, degrees_z: float) -> np.ndarray:
    ax, az = np.radians(degrees_x), np.radians(degrees_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


# T1 content moved by this rigid motion (as if the subject moved between sessions): anatomy point = R q + t.
MOTION_R, MOTION_T = rotation(6.0, -5.0), np.array([3.5, -2.5, 4.0])


def anatomy(points: np.ndarray, contrast: str) -> np.ndarray:
    """A head-like phantom in physical mm (centre 0): an ellipsoid with asymmetric blobs, contrast-specific."""
    r = np.sqrt(((points / np.array([44.0, 52.0, 38.0])) ** 2).sum(axis=-1))
    d2 = ((points[..., None, :] - BLOBS) ** 2).sum(axis=-1)
    blobs = (np.exp(-d2 / (2 * BLOB_SIZE**2)) * WEIGHTS[contrast]).sum(axis=-1)
    return np.where(r < 1, 1000 * np.clip(BASE[contrast] + blobs, 0.05, None) / (1 + np.exp((r - 0.92) * 40)), 0.0)


def volume(size, spacing, direction, centre, contrast, motion=False) -> sitk.Image:
    """The phantom sampled on a grid of ``size`` (x, y, z) centred at ``centre`` mm."""
    direction = np.asarray(direction, float).reshape(3, 3)
    half = direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    origin = np.asarray(centre, float) - half
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float)
    points = origin + (index * spacing) @ direction.T
    if motion:
        points = points @ MOTION_R.T + MOTION_T
    image = sitk.GetImageFromArray(anatomy(points, contrast).astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin.tolist())
    image.SetDirection(direction.ravel().tolist())
    return image


T2_GRID = dict(size=(56, 64, 40), spacing=(2.0, 2.0, 2.5), direction=np.diag([-1.0, -1.0, 1.0]), centre=(0, 0, 0))
T1_GRID = dict(size=(48, 56, 52), spacing=(2.2, 2.2, 2.0), direction=rotation(12.0, 7.0), centre=(5, -4, 3))


@pytest.fixture(scope="module")
def ixi_run(tmp_path_factory):
    """Per-contrast IXI folders: one good subject, one without PD, one with a corrupt PD, one with a T1 far away."""
    root = tmp_path_factory.mktemp("ixi")
    good = {"T1": volume(**T1_GRID, contrast="t1", motion=True),
            "T2": volume(**T2_GRID, contrast="t2"), "PD": volume(**T2_GRID, contrast="pd")}
    far = sitk.Image(good["T1"])
    far.SetOrigin((np.asarray(far.GetOrigin()) + (0, 0, 1000)).tolist())
    subjects = {"IXI001-Guys-0001": good, "IXI002-HH-0002": {k: good[k] for k in ("T1", "T2")},
                "IXI003-IOP-0003": good, "IXI004-Guys-0004": {**good, "T1": far}}
    for subject, images in subjects.items():
        for contrast, image in images.items():
            folder = root / f"IXI-{contrast}"
            folder.mkdir(exist_ok=True)
            sitk.WriteImage(image, str(folder / f"{subject}-{contrast}.nii.gz"))
    corrupt = root / "IXI-PD" / "IXI003-IOP-0003-PD.nii.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:4000])  # truncated mid-stream, as an interrupted download
    store = root.parent / f"{root.name}-store"
    result = CliRunner().invoke(app, ["preprocess", "--dataset", "ixi", "--root", str(root), "--out", str(store),
                                      "--split", "1,1,1"])
    return root, store, result


def test_ixi_t1_is_registered_onto_the_t2_grid_within_a_voxel(ixi_run):
    _, store_path, result = ixi_run
    store = SliceStore(store_path)
    entry = store.manifest["subjects"]["IXI001-Guys-0001"]
    assert store.slice_size == (256, 256) and store.contrasts == ["t1", "t2", "pd"]
    assert entry["reference"] == "t2" and entry["shape"] == [40, 64, 56]
    reg = entry["registration"]["t1"]
    estimated = sitk.Euler3DTransform()
    estimated.SetFixedParameters(reg["fixed_parameters"])
    estimated.SetParameters(reg["parameters"])
    # the truth maps a T2-space point p to the T1 point q with R q + t = p; the error of a rigid map is largest at
    # the corners of the region, so check the corners of the head's bounding box
    corners = np.array([(x, y, z) for x in (-44, 44) for y in (-52, 52) for z in (-38, 38)], float)
    truth = (corners - MOTION_T) @ MOTION_R
    estimate = np.array([estimated.TransformPoint(p.tolist()) for p in corners])
    residual_mm = np.linalg.norm(estimate - truth, axis=1).max()
    applied_mm = np.linalg.norm(truth - corners, axis=1).max()
    voxel_mm = min(T2_GRID["spacing"])
    assert applied_mm > 3 * voxel_mm  # without registration the T1 would be several voxels off
    assert residual_mm < voxel_mm, f"residual {residual_mm:.2f} mm"

    # the stored T1 slices match the phantom's T1 on the T2 grid (not the moved one)
    slices = store.slices("IXI001-Guys-0001")
    reference = sitk.GetArrayFromImage(sitk.DICOMOrient(volume(**T2_GRID, contrast="t1"), "LPS")).astype(float)
    rows = np.asarray(entry["slice_indices"])
    oy, ox = entry["inplane_offset"]
    t1 = slices[:, 0, -oy:-oy + 64, -ox:-ox + 56].astype(float)
    expected = np.clip(reference[rows] / entry["normalization"]["t1"]["max"], 0, 1)
    inside = expected > 0.05
    assert np.corrcoef(t1[inside], expected[inside])[0, 1] > 0.97
    assert float(np.abs(t1 - expected)[inside].mean()) < 0.03


def test_ixi_failures_are_reported_by_name_and_the_rest_is_processed(ixi_run):
    _, store_path, result = ixi_run
    assert result.exit_code == 1, result.output  # some subjects failed
    store = SliceStore(store_path)
    assert store.subjects() == ["IXI001-Guys-0001"]
    manifest = store.manifest
    assert manifest["skipped"] == {"IXI002-HH-0002": "missing contrast pd"}
    assert set(manifest["failed"]) == {"IXI003-IOP-0003", "IXI004-Guys-0004"}
    assert "corrupt" in manifest["failed"]["IXI003-IOP-0003"]
    assert "does not overlap" in manifest["failed"]["IXI004-Guys-0004"]
    summary = " ".join(result.stderr.split())
    for name in ("IXI002-HH-0002", "IXI003-IOP-0003", "IXI004-Guys-0004", "missing contrast pd", "corrupt",
                 "does not overlap"):
        assert name in summary
    assert "1 processed" in summary and "1 skipped" in summary and "2 failed" in summary
    assert not list(store_path.rglob(".*"))  # no temporary left behind


def test_usage_errors_exit_2_with_one_line(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["preprocess", "--dataset", "ixi", "--root", str(tmp_path / "nope"),
                                  "--out", str(tmp_path / "s")])
    (tmp_path / "empty").mkdir()
    nothing = runner.invoke(app, ["preprocess", "--dataset", "brats", "--root", str(tmp_path / "empty"),
                                  "--out", str(tmp_path / "s")])
    for result, text in ((missing, "dataset folder not found"), (nothing, "no brats files recognised")):
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and text in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "s").exists()
