"""Shared by the synthesis tests (test_io, test_inference, test_cli_synthesize): the shipped demo case, small
real crops of it in any voxel order, and small real checkpoints made on the spot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"
DEMO_T1 = DEMO / "TCGA-FG-6692-t1n.nii.gz"
DEMO_T2 = DEMO / "TCGA-FG-6692-t2w.nii.gz"
CROP = (slice(72, 168), slice(64, 176), slice(62, 82))  # 96x112x20 voxels through the centre of the brain


def checkpoint(path: Path, preset_name: str | None = None, seed: int = 0, **metadata: Any) -> Path:
    """A real mrsynth checkpoint with seeded random weights: the brief's tiny AGI-Net with ``preset_name="tiny"``,
    otherwise a one-block ResUnet small enough that a 240x240x155 volume runs in seconds on a busy CPU."""
    import torch

    from mrsynth.checkpoint import default_normalization, save_checkpoint
    from mrsynth.models import ModelConfig, build_model, preset

    torch.manual_seed(seed)
    config = preset(preset_name) if preset_name else ModelConfig(arch="resunet", widths=(4, 8, 8, 8), blocks_per_stage=1)
    model = build_model(config)
    meta = {"scenario": {"inputs": ["t1", "t2"], "target": "flair"}, "normalization": default_normalization(),
            "slice_size": [240, 240], "voxel_size_mm": [1, 1, 1], "skull_stripped": True, "training": {}}
    meta.update(metadata)
    return save_checkpoint(path, model, meta)


def crop(source: Path, target: Path, region: tuple[slice, slice, slice] = CROP) -> Path:
    """A crop of a real scan with nibabel's slicer (which keeps the affine right), as NIfTI."""
    image = nib.load(str(source))
    nib.save(image.slicer[region], str(target))
    return target


def reorient(source: Path, target: Path, axcodes: tuple[str, str, str]) -> Path:
    """The same scan stored in another voxel order (nibabel's RAS+ axis codes), affine changed to match."""
    image = nib.load(str(source))
    transform = nib.orientations.ornt_transform(
        nib.io_orientation(image.affine), nib.orientations.axcodes2ornt(axcodes)
    )
    reoriented = image.as_reoriented(transform)
    assert nib.aff2axcodes(reoriented.affine) == axcodes
    nib.save(reoriented, str(target))
    return target


def header_fields(path: Path) -> dict[str, Any]:
    """What acceptance 1 compares between an output and its reference."""
    image = nib.load(str(path))
    header = image.header
    return {
        "shape": image.shape[:3],
        "affine": np.asarray(image.affine),
        "qform": np.asarray(header.get_qform()),
        "sform": np.asarray(header.get_sform()),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "zooms": tuple(float(z) for z in header.get_zooms()[:3]),
    }


def assert_same_header(output: Path, reference: Path) -> None:
    got, want = header_fields(output), header_fields(reference)
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            assert got[key] == value, key
    assert nib.load(str(output)).get_data_dtype() == np.float32


def run_synthesize(*args: object) -> Any:
    """``mrsynth synthesize ARGS`` in-process (Typer's runner), stdout and stderr apart."""
    from typer.testing import CliRunner

    from mrsynth.cli.app import app

    return CliRunner().invoke(app, ["synthesize", *[str(a) for a in args]])


def assert_one_error_line(result: Any, *names: object) -> str:
    """The bad-input contract: exit code 2, exactly one ``error:`` line naming ``names``, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]
