"""The slices stage: the normalised inputs as a stack of axial slices, and the window the model sees of each.

Why: the model is 2-D and was trained on ``slice_size`` slices. The inputs, already in the canonical voxel order
(so axial means anatomy), become one (Z, C, Y, X) array with the channels in the checkpoint's input order, whatever
order the user gave the scans in; :class:`SliceWindow` pads or crops each slice to the training size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk


def stack_channels(images: Mapping[str, "sitk.Image"], order: Sequence[str]) -> tuple["sitk.Image", np.ndarray]:
    """(the grid of the stack, (Z, C, Y, X) float32 with channels in ``order``); all images share one grid."""
    import SimpleITK as sitk

    stack = np.stack([sitk.GetArrayFromImage(images[c]) for c in order], axis=1)
    return images[order[0]], stack


@dataclass(frozen=True)
class SliceWindow:
    """Where the model's slice_size window sits in a slice: padding where the slice is smaller, a crop around the
    signal where it is larger (the cropped margins hold no signal in any slice, so their output is background).
    A slice whose signal does not fit keeps its full size: the network is fully convolutional."""

    starts: tuple[int, int]
    lengths: tuple[int, int]
    shape: tuple[int, int]

    @classmethod
    def fit(cls, stack: np.ndarray, size: tuple[int, ...]) -> "SliceWindow":
        shape = (int(stack.shape[2]), int(stack.shape[3]))
        if len(size) != 2 or min(size) < 1:
            return cls((0, 0), shape, shape)
        signal = stack.any(axis=(0, 1))
        starts, lengths = [], []
        for axis, (n, m) in enumerate(zip(shape, size)):
            if n <= m:
                starts.append(-((m - n) // 2))
                lengths.append(m)
                continue
            hits = np.flatnonzero(signal.any(axis=1 - axis))
            low, high = (int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, n)
            if high - low > m:
                starts.append(0)
                lengths.append(n)
            else:
                starts.append(min(max((low + high - m) // 2, 0), n - m))
                lengths.append(m)
        return cls((starts[0], starts[1]), (lengths[0], lengths[1]), shape)

    def _spans(self) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """(source region in the slice, destination region in the window), both clipped to what overlaps."""
        source, destination = [], []
        for start, length, n in zip(self.starts, self.lengths, self.shape):
            low, high = max(start, 0), min(start + length, n)
            source.append(slice(low, high))
            destination.append(slice(low - start, high - start))
        return (source[0], source[1]), (destination[0], destination[1])

    def cut(self, slices: np.ndarray) -> np.ndarray:
        """(B, C, Y, X) slices -> (B, C, *lengths) windows, zero where the window reaches past the slice."""
        (sy, sx), (dy, dx) = self._spans()
        if (sy, sx) == (dy, dx) and slices.shape[2:] == self.lengths:
            return np.ascontiguousarray(slices)
        windows = np.zeros((*slices.shape[:2], *self.lengths), dtype=np.float32)
        windows[:, :, dy, dx] = slices[:, :, sy, sx]
        return windows

    def paste(self, windows: np.ndarray, volume: np.ndarray, index: np.ndarray) -> None:
        """Write (B, *lengths) model outputs back into ``volume[index]`` (Z, Y, X)."""
        (sy, sx), (dy, dx) = self._spans()
        volume[index, sy, sx] = windows[:, dy, dx]
