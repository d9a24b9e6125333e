"""``mrsynth train --rotate-aug DEG``: in-plane rotation composed with the zoom in one resampling. Its direction
against ``torch.rot90`` and a float64 reference, inputs and target moved together, samples bitwise unchanged when
the option is off, the recipe record, resume, and bad values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from synth_helpers import assert_one_error_line
from test_train import PhantomPairs, disc_slice, make_store
from typer.testing import CliRunner

from mrsynth.checkpoint import read_metadata
from mrsynth.cli.app import app
from mrsynth.training.augment import (AugmentedPairs, background_level, resample, sample_generator, zoom_rotate,
                                      zoom_rotate_matrix)
from mrsynth.training.state import load_state

TINY_RUN = ["--scenario", "t1,t2->flair", "--arch", "resunet", "--widths", "8,16,16,32", "--framework", "l1",
            "--batch-size", "2", "--crop", "24", "--device", "cpu", "--threads", "1", "-q"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; --threads 1 also sets it for the whole test process
    yield
    torch.set_num_threads(threads)


def random_stack(channels: int, height: int, width: int, seed: int) -> torch.Tensor:
    """A non-symmetric random (C, H, W) stack, nowhere 0 (so its non-zero box is the whole image)."""
    return 0.2 + 0.8 * torch.rand(channels, height, width, generator=torch.Generator().manual_seed(seed))


# affine_grid's float32 coordinates land up to ~eps * size / 2 px off the pixel centres; on random images whose
# neighbours differ by up to 0.8 and whose values are >= 0.2 that is a relative error of ~1e-5 (8e-6 measured at 0
# degrees, 37 x 29); a wrong direction or a missing aspect correction gives errors of order 1
FLOAT32_GRID = 5e-5


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.double()
    return float(((out.double() - reference).abs() / reference.abs()).max())


# --- geometry ------------------------------------------------------------------------------------------------------


def test_rotation_by_zero_without_zoom_is_the_identity() -> None:
    x = random_stack(3, 37, 29, seed=1)
    assert relative_error(zoom_rotate(x, 1.0, 0.0), x) < FLOAT32_GRID


@pytest.mark.parametrize(("degrees", "turns"), [(90.0, 1), (-90.0, -1), (180.0, 2)])
def test_quarter_turns_match_rot90(degrees: float, turns: int) -> None:
    """Positive angles turn the content counter-clockwise as displayed, like ``torch.rot90(x, 1, dims=(-2, -1))``.
    A square image maps onto itself; on a 40 x 30 one the central 30 x 30 square does (the aspect correction)."""
    square = random_stack(3, 33, 33, seed=2)
    assert relative_error(zoom_rotate(square, 1.0, degrees), torch.rot90(square, turns, dims=(-2, -1))) < FLOAT32_GRID
    wide = random_stack(2, 40, 30, seed=3)
    centre = slice(5, 35)
    out = zoom_rotate(wide, 1.0, degrees)[:, centre]
    assert relative_error(out, torch.rot90(wide[:, centre], turns, dims=(-2, -1))) < FLOAT32_GRID


def test_zoom_and_rotation_match_a_float64_reference_on_a_ramp() -> None:
    """Bilinear sampling reproduces a linear ramp exactly, so where the source point lies inside the image the output
    is the ramp at that point. The reference is written independently of the affine matrix: in display coordinates
    (x right, y up, as complex numbers about the centre) content turned counter-clockwise by a and scaled by f means
    the output at z shows the input at z * exp(-i a) / f. Non-square, so a missing aspect correction would show."""
    g = torch.Generator().manual_seed(6)
    a, b, c = (float(v) for v in torch.rand(3, generator=g))
    height, width = 48, 36
    rows = torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float64)[None, :].expand(height, width)

    def ramp(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return a * r / height + b * q / width + c

    cy, cx = (height - 1) / 2, (width - 1) / 2
    image = ramp(rows, cols)[None].float()
    for factor, degrees in ((1.0, 17.0), (0.6, -33.0), (1.3, 125.0)):
        z = torch.complex(cols - cx, -(rows - cy)) * complex(math.cos(math.radians(-degrees)),
                                                              math.sin(math.radians(-degrees))) / factor
        src_cols, src_rows = z.real + cx, -z.imag + cy
        inside = (src_rows >= 0) & (src_rows <= height - 1) & (src_cols >= 0) & (src_cols <= width - 1)
        out = zoom_rotate(image, factor, degrees)[0]
        assert inside.float().mean() > 0.3
        assert relative_error(out[inside], ramp(src_rows, src_cols)[inside]) < 1e-5, (factor, degrees)


def test_rotation_fills_the_uncovered_corners_with_the_background_level() -> None:
    unstripped = disc_slice(64, background=0.02, pad=3, seed=2)
    turned = zoom_rotate(unstripped, 1.0, 45.0)
    assert bool((turned > 0.019).all())  # no zero corners: the padding and the uncovered field of view are air
    assert float((turned[:, :4, :4] - 0.02).abs().max()) < 1e-6
    stripped = disc_slice(64, background=0.0, pad=3, seed=2)
    assert torch.equal(background_level(stripped), torch.zeros(2))
    assert float(zoom_rotate(stripped, 1.0, 45.0)[:, :4, :4].abs().max()) == 0.0


# --- AugmentedPairs ------------------------------------------------------------------------------------------------


def zoom_before_rotation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """The zoom as it was before ``--rotate-aug`` existed (its matrix written out), for the bitwise check."""
    nonzero = (image != 0).any(dim=0)
    rows, cols = (torch.nonzero(nonzero.any(dim=axis)).flatten() for axis in (1, 0))
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    level = background_level(image)[:, None, None]
    offset = torch.zeros_like(image)
    offset[:, box[0], box[1]] = image[:, box[0], box[1]] - level
    return level + resample(offset[None], [[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]])[0]


def test_without_rotation_samples_are_bitwise_those_of_before() -> None:
    """Left out (or 0), --rotate-aug draws nothing and the zoom resamples as before: same random stream, same
    matrix, so runs and resume states made before the option are reproduced bit for bit."""
    data = PhantomPairs(4, 40, seed=3)
    default = AugmentedPairs(data, seed=7, flip=True, scale=(0.5, 1.2))
    explicit_zero = AugmentedPairs(data, seed=7, flip=True, scale=(0.5, 1.2), rotate=0.0)
    flips = set()
    for position in range(8):
        x, y = data[position % 4]
        generator = sample_generator(7, position)
        factor = 0.5 + 0.7 * float(torch.rand((), generator=generator))
        moved = zoom_before_rotation(torch.cat([x, y]), factor)
        flip = bool(torch.rand((), generator=generator) < 0.5)
        flips.add(flip)
        expected = moved.flip(-1) if flip else moved
        for pairs in (default, explicit_zero):
            xa, ya = pairs[(position % 4, position)]
            assert torch.equal(xa, expected[:2]) and torch.equal(ya, expected[2:]), position
    assert flips == {False, True}


def principal_angle(image: torch.Tensor) -> float:
    """Orientation in degrees (counter-clockwise as displayed, in (-90, 90]) of an image's intensity-weighted
    principal axis."""
    height, width = image.shape
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    weight = image.double() / image.double().sum()
    x = cols - float((weight * cols).sum())
    y = -(rows - float((weight * rows).sum()))  # y up
    mu20, mu02, mu11 = (float((weight * v).sum()) for v in (x * x, y * y, x * y))
    return math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02))


def test_rotation_augmentation_turns_inputs_and_target_together_by_the_drawn_angle() -> None:
    """Each sample turns by an angle drawn uniformly from [-DEG, DEG] (measured on the bar's principal axis, which
    also confirms the direction), inputs and target alike."""
    yy, xx = torch.meshgrid(torch.arange(64.0) - 31.5, torch.arange(64.0) - 31.5, indexing="ij")
    x = 0.1 * (yy**2 + xx**2 < 28**2).float().expand(2, 64, 64).clone()  # a round 'head' (background 0 around it)
    x[0, 28:36, 12:52] = 0.8  # with a horizontal bar inside: the principal axis is at 0 degrees
    x[1, 28:36, 12:52] = torch.linspace(0.3, 0.9, 40)
    pairs = AugmentedPairs([(x, x[:1].clone())], seed=5, flip=False, rotate=30.0)
    angles = []
    for position in range(40):
        xa, ya = pairs[(0, position)]
        assert xa.shape == (2, 64, 64) and torch.equal(ya[0], xa[0])  # one transform for inputs and target
        assert torch.equal(xa, pairs[(0, position)][0])  # a function of the stream position
        angles.append(principal_angle(xa[0]))
        drawn = -30.0 + 60.0 * float(torch.rand((), generator=sample_generator(5, position)))  # its first draw
        assert abs(angles[-1] - drawn) < 0.1, (position, angles[-1], drawn)  # the bar turned by the drawn angle
    assert min(angles) < -20 and max(angles) > 20  # both directions, most of the range drawn


def test_matrix_at_zero_degrees_is_the_zoom() -> None:
    assert zoom_rotate_matrix(0.5, 0.0, 40, 30) == [[2.0, -0.0, 0.0], [0.0, 2.0, 0.0]]


# --- command line --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


def train_cli(*args: object):
    return CliRunner().invoke(app, ["train", *[str(a) for a in args]])


def test_the_bound_is_recorded_and_kept_on_resume(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = train_cli("--data", store, *TINY_RUN, "--iters", "1", "--val-every", "1", "--rotate-aug", "15",
                     "--run-dir", run)
    assert done.exit_code == 0, done.output
    assert json.loads((run / "run.json").read_text())["train"]["rotate"] == 15.0
    assert read_metadata(run / "best.safetensors")["training"]["recipe"]["rotate"] == 15.0
    assert load_state(run / "resume.safetensors")["train_config"]["rotate"] == 15.0
    line = assert_one_error_line(train_cli("--data", store, *TINY_RUN, "--rotate-aug", "10", "--resume",
                                           "--run-dir", run), "--rotate-aug 10", "15.0")
    assert "differs from the run being resumed" in line
    resumed = train_cli("--data", store, *TINY_RUN, "--iters", "2", "--resume", "--run-dir", run)
    assert resumed.exit_code == 0, resumed.output
    assert read_metadata(run / "last.safetensors")["training"]["recipe"]["rotate"] == 15.0


@pytest.mark.parametrize(("value", "problem"), [("-5", "[0, 180]"), ("181", "[0, 180]"), ("nan", "[0, 180]"),
                                                ("ten", "expected a number of degrees")])
def test_bad_bounds_are_one_line(store: Path, tmp_path: Path, value: str, problem: str) -> None:
    result = train_cli("--data", store, *TINY_RUN, "--iters", "1", "--rotate-aug", value, "--run-dir", tmp_path / "r")
    assert_one_error_line(result, "--rotate-aug", problem)
    assert not (tmp_path / "r").exists()
