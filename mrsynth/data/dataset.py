"""A torch Dataset over a slice store: (inputs, target) pairs of 2-D slices for one scenario.

Why memmaps opened lazily: the Dataset is pickled into every DataLoader worker; carrying open maps (or arrays)
along would copy data or share file handles across processes. Each worker opens the subjects it samples on first
use and the OS page cache shares the bytes between workers.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from mrsynth.data.store import SliceStore
from mrsynth.errors import InputError

SliceFilter = Callable[[str, int], bool]


class SliceDataset(Dataset):
    """Slices of one split as float32 tensors: ``x`` (len(inputs), H, W) and ``y`` (1, H, W)."""

    def __init__(
        self,
        store: SliceStore | str,
        split: Optional[str] = "train",
        inputs: list[str] | tuple[str, ...] = ("t1", "t2"),
        target: str = "flair",
        slice_filter: Optional[SliceFilter] = None,
        target_scale: Optional[dict[str, float]] = None,
    ) -> None:
        """``target_scale``: {subject: factor} applied to its targets, clipped to [0, 1] (training on targets of
        one median, :func:`mrsynth.data.target_median.training_target_scales`); other subjects are unscaled."""
        self.store = store if isinstance(store, SliceStore) else SliceStore(store)
        self.target_scale = dict(target_scale or {})
        if target in inputs:
            raise InputError("scenario", f"target {target!r} is also an input")
        self.inputs = list(inputs)
        self.target = target
        self._input_channels = [self.store.channel(c) for c in self.inputs]
        self._target_channel = self.store.channel(target)
        self.index: list[tuple[str, int]] = []
        for subject in self.store.subjects(split):
            for row, axial in enumerate(self.store.slice_indices(subject)):
                if slice_filter is None or slice_filter(subject, axial):
                    self.index.append((subject, row))
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        subject, row = self.index[i]
        slices = self._maps.get(subject)
        if slices is None:
            slices = self._maps[subject] = self.store.slices(subject)
        # np.array copies: a float32 store's slice would otherwise be a read-only view of the memory map
        x = np.array(slices[row, self._input_channels], dtype=np.float32)
        y = np.array(slices[row, self._target_channel][None], dtype=np.float32)
        if subject in self.target_scale:
            np.clip(y * np.float32(self.target_scale[subject]), 0.0, 1.0, out=y)
        return torch.from_numpy(x), torch.from_numpy(y)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}  # never ship open memmaps to worker processes
        return state
