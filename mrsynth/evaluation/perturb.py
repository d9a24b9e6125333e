"""The misalignment experiment of the paper's Fig. 3: translate one input contrast by a random sub-pixel shift.

Each slice gets its own random direction, drawn from a generator seeded by (seed, magnitude, subject, axial index),
so every checkpoint sees exactly the same perturbed inputs and a rerun reproduces the curve bit for bit. The
translation is bilinear (``scipy.ndimage.shift`` with ``order=1``) with zero fill: background is 0 after
normalisation, and bilinear interpolation neither rings (as a Fourier shift would on a cropped brain) nor wraps
the brain around the border.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from scipy import ndimage

from mrsynth.errors import InputError


def parse_levels(spec: str, source: str = "--perturb-shift") -> list[float]:
    """``START:STOP:STEP`` in pixels, STOP included (``0:3:0.5`` -> 0, 0.5, ..., 3: the paper's 7 levels)."""
    parts = spec.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise InputError(source, f"{spec!r} is not START:STOP:STEP", "e.g. 0:3:0.5 for 0, 0.5, ..., 3 px") from None
    if step <= 0 or start < 0 or stop < start or not all(math.isfinite(v) for v in (start, stop, step)):
        raise InputError(source, f"{spec!r} needs 0 <= START <= STOP and STEP > 0", "e.g. 0:3:0.5")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > 1000:
        raise InputError(source, f"{spec!r} gives {count} levels", "use a larger STEP")
    # Rounding keeps 0.1-style steps exact in reports (0.30000000000000004 -> 0.3).
    return [round(start + i * step, 10) for i in range(count)]


def slice_key(subject: str, axial_index: int) -> int:
    """A stable integer for one slice (crc32, unlike ``hash()``, does not change between Python runs)."""
    return zlib.crc32(f"{subject}:{int(axial_index)}".encode())


def shift_vectors(magnitude: float, keys: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) shifts (dy, dx) of length ``magnitude`` in a random direction per slice key.

    The generator is seeded by the magnitude itself (in thousandths of a pixel), not by the level's position
    in the list, so a 1 px level gets the same directions in ``0:3:0.5`` and in ``0:3:1``.
    """
    out = np.zeros((len(keys), 2), dtype=np.float64)
    if magnitude == 0:
        return out
    level = int(round(magnitude * 1000))
    for i, key in enumerate(keys):
        angle = np.random.default_rng([seed, level, int(key)]).uniform(0.0, 2.0 * np.pi)
        out[i] = magnitude * np.sin(angle), magnitude * np.cos(angle)
    return out


def shift_channel(inputs: np.ndarray, channel: int, shifts: np.ndarray) -> np.ndarray:
    """A copy of an (N, C, H, W) stack with ``inputs[:, channel]`` translated by ``shifts[n] = (dy, dx)`` px."""
    out = np.array(inputs, dtype=np.float32, copy=True)
    for n, (dy, dx) in enumerate(shifts):
        if dy or dx:
            out[n, channel] = ndimage.shift(out[n, channel], (dy, dx), order=1, mode="constant", cval=0.0)
    return out
