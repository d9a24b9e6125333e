"""Training augmentation: in-plane zoom and rotation, brain-centred random crops, left-right flips, the
misalignment shift, input bias fields and input gamma.

Every random choice for one sample comes from a generator seeded by (run seed, stream position) (see
``sampling.py``), so a sample looks the same whatever worker, rank or restart produces it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def sample_generator(seed: int, position: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 2_654_435_761 + position * 97 + 12_345) % (2**63 - 1))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _nonzero_box(image: torch.Tensor) -> tuple[slice, slice] | None:
    """Rows and columns of the bounding box of a (C, H, W) stack's non-zero voxels (None if it is all zero)."""
    nonzero = (image != 0).any(dim=0)
    rows = torch.nonzero(nonzero.any(dim=1)).flatten()
    cols = torch.nonzero(nonzero.any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def brain_crop_origin(x: torch.Tensor, crop: int, generator: torch.Generator) -> tuple[int, int]:
    """Top-left corner of a ``crop`` square that stays inside the image and, where possible, overlaps the brain.

    Uniform crops of a 240x240 BraTS slice are often mostly background; drawing the corner so that the crop lies
    within the bounding box of the non-zero input voxels (widened to fit the crop) keeps every step informative.
    """
    height, width = x.shape[-2:]
    box = _nonzero_box(x)
    rows, cols = box if box is not None else (None, None)

    def axis_origin(size: int, span: slice | None) -> int:
        if crop >= size:
            return 0
        low, high = (span.start, span.stop) if span is not None else (0, size)
        if high - low <= crop:  # the crop can hold the whole box: any corner that keeps it inside
            first, last = max(0, high - crop), min(low, size - crop)
        else:  # the box is wider than the crop: any crop inside the box
            first, last = low, high - crop
        return first + int(torch.randint(last - first + 1, (), generator=generator))

    return axis_origin(height, rows), axis_origin(width, cols)


def random_gamma(image: torch.Tensor, max_log_gamma: float, generator: torch.Generator) -> torch.Tensor:
    """``image ** gamma`` with log(gamma) uniform in [-max_log_gamma, max_log_gamma] (TorchIO's RandomGamma).

    Why: the inputs are percentile-normalised, which fixes their scale but not their contrast; a new scanner or
    sequence bends the grey-value curve. Randomising that curve per input keeps the model from learning one
    site's exact tissue intensities. Values stay in [0, 1] and the background stays 0.
    """
    gamma = float(torch.exp(torch.empty(()).uniform_(-max_log_gamma, max_log_gamma, generator=generator)))
    return image.clamp(min=0.0) ** gamma


def random_bias_field(image: torch.Tensor, max_coefficient: float, generator: torch.Generator,
                      order: int = 3) -> torch.Tensor:
    """``image`` times a smooth multiplicative field ``exp(sum c_ij u^i v^j)``, i + j <= ``order``, with every
    ``c_ij`` uniform in [-max_coefficient, max_coefficient] and (u, v) the slice's coordinates in [-1, 1]
    (TorchIO's RandomBiasField, whose defaults are 0.5 and order 3), scaled so that the mean over the non-zero
    voxels is unchanged; values stay in [0, 1] and the background stays 0.

    Why: raw scans carry the receive coil's intensity inhomogeneity, which the BraTS training volumes had
    corrected away (N4); a model that never saw it reads a bright corner as tissue contrast. The target is left
    alone, so the model learns to synthesise the corrected image.
    """
    height, width = image.shape[-2:]
    v = torch.linspace(-1.0, 1.0, height)[:, None]
    u = torch.linspace(-1.0, 1.0, width)[None, :]
    log_field = torch.zeros(height, width)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            coefficient = _uniform(generator, -max_coefficient, max_coefficient)
            log_field = log_field + coefficient * u**i * v**j
    field = torch.exp(log_field)
    biased = image * field
    tissue = image != 0
    if tissue.any():
        biased = biased * (image[tissue].sum() / biased[tissue].sum())
    return biased.clamp(0.0, 1.0)


def resample(stack: torch.Tensor, theta: list[list[float]], padding_mode: str = "zeros") -> torch.Tensor:
    """An (N, C, H, W) stack sampled bilinearly through the affine map ``theta`` (output to input, in
    ``F.affine_grid``'s [-1, 1] coordinates with pixel-centre geometry, ``align_corners=False``).

    Why one function: the translation, the zoom and rotation, and the zoomed or rotated validation slices must share
    one geometry.
    """
    matrix = torch.tensor(theta, dtype=stack.dtype).expand(len(stack), 2, 3)
    grid = F.affine_grid(matrix, list(stack.shape), align_corners=False)
    return F.grid_sample(stack, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def zoom_rotate_matrix(factor: float, degrees: float, height: int, width: int) -> list[list[float]]:
    """``theta`` (for :func:`resample`) of an in-plane scaling by ``factor`` and rotation by ``degrees`` about the
    centre of a ``height`` x ``width`` image, composed into one affine so that the image is resampled once.

    Direction: a positive angle turns the content counter-clockwise as the array is displayed (row 0 at the top,
    column 0 on the left); 90 degrees is ``torch.rot90(image, 1, dims=(-2, -1))``.

    Why the aspect terms: ``affine_grid`` scales each axis to [-1, 1], so a rotation of those coordinates would shear a
    non-square slice; the matrix is the pixel-space rotation conjugated by that scaling, which keeps the head rigid.
    At 0 degrees it is the plain zoom ``diag(1 / factor)``.
    """
    cos = math.cos(math.radians(degrees)) / factor
    sin = math.sin(math.radians(degrees)) / factor
    return [[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]]


def translate(image: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Sub-pixel translation of an (H, W) image by (dy, dx) px, bilinear, zero outside (background)."""
    height, width = image.shape
    return resample(image[None, None], [[1.0, 0.0, -2.0 * dx / width], [0.0, 1.0, -2.0 * dy / height]])[0, 0]


def background_level(image: torch.Tensor) -> torch.Tensor:
    """Per-channel level of a (C, H, W) stack's background: the median of the edge ring of its non-zero box.

    Why: zooming out uncovers field of view that has to be filled with something. The fill is this level: 0 for
    skull-stripped slices, whose box is edged by empty background, and the faint signal of air around the head
    for scans that keep it — which is what a real slice near the vertex shows around its small cross-section.
    """
    return _edge_median(image, _nonzero_box(image))


def _edge_median(image: torch.Tensor, box: tuple[slice, slice] | None) -> torch.Tensor:
    if box is None:
        return torch.zeros(image.shape[0], dtype=image.dtype)
    inner = image[:, box[0], box[1]]
    ring = torch.cat([inner[:, 0], inner[:, -1], inner[:, :, 0], inner[:, :, -1]], dim=1)
    return ring.median(dim=1).values


def zoom_rotate(image: torch.Tensor, factor: float, degrees: float = 0.0) -> torch.Tensor:
    """A (C, H, W) stack scaled in-plane by ``factor`` and rotated by ``degrees`` (counter-clockwise as displayed,
    see :func:`zoom_rotate_matrix`) about its centre, in one bilinear pass. What lies outside the non-zero box (a
    store's zero padding) and what the zoom or the rotation uncovers take each channel's :func:`background_level`.

    Why: axial slices shrink from the middle of the head to nothing at the vertex and the skull base, and a model
    trained on a slab of mid-head slices sees only large cross-sections; zooming out shows it small heads in a wide
    field of view. Rotation: a raw head lies turned in the scanner's plane, unlike the atlas-aligned training
    volumes. Inputs and target go through one call, so they stay voxel-aligned.
    """
    box = _nonzero_box(image)
    level = _edge_median(image, box)[:, None, None]
    offset = torch.zeros_like(image)
    if box is not None:
        offset[:, box[0], box[1]] = image[:, box[0], box[1]] - level
    return level + resample(offset[None], zoom_rotate_matrix(factor, degrees, *image.shape[-2:]))[0]


class AugmentedPairs(Dataset):
    """Wraps a dataset of ``(x, y)`` pairs; indexed by ``(index, position)`` pairs from the batch sampler."""

    def __init__(
        self, base: Any, seed: int, crop: int | None = None, flip: bool = True, shift_px: float = 0.0,
        gamma: float = 0.0, scale: tuple[float, float] | None = None, rotate: float = 0.0, bias: float = 0.0,
    ) -> None:
        self.base, self.seed, self.crop, self.flip, self.shift_px, self.gamma = base, seed, crop, flip, shift_px, gamma
        self.scale, self.rotate, self.bias = scale, rotate, bias

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, position = key
        x, y = self.base[index]
        x = torch.as_tensor(x, dtype=torch.float32)
        y = torch.as_tensor(y, dtype=torch.float32)
        generator = sample_generator(self.seed, position)
        if self.scale is not None or self.rotate > 0:  # rotation off draws no angle: the samples of the zoom alone
            factor = _uniform(generator, *self.scale) if self.scale is not None else 1.0
            degrees = _uniform(generator, -self.rotate, self.rotate) if self.rotate > 0 else 0.0
            moved = zoom_rotate(torch.cat([x, y]), factor, degrees)
            x, y = moved[: x.shape[0]], moved[x.shape[0] :]
        if self.bias > 0:  # on the whole slice, before the crop: the field spans the head, as a coil's does
            x = torch.stack([random_bias_field(channel, self.bias, generator) for channel in x])
        if self.crop is not None:
            top, left = brain_crop_origin(x, self.crop, generator)
            x = x[:, top : top + self.crop, left : left + self.crop]
            y = y[:, top : top + self.crop, left : left + self.crop]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            x, y = x.flip(-1), y.flip(-1)
        if self.shift_px > 0 and x.shape[0] > 1:
            channel = int(torch.randint(x.shape[0], (), generator=generator))
            dy = _uniform(generator, -self.shift_px, self.shift_px)
            dx = _uniform(generator, -self.shift_px, self.shift_px)
            x = x.clone()
            x[channel] = translate(x[channel], dy, dx).clamp_(0.0, 1.0)
        if self.gamma > 0:
            x = torch.stack([random_gamma(channel, self.gamma, generator) for channel in x])
        return x.contiguous(), y.contiguous()
