"""The model stage: the network over every axial slice that has signal, in batches.

Why its own module: this is the only stage that needs torch and the device; everything before and after it is
SimpleITK and numpy. Slices without any signal are never run (their output is 0), and neither is any voxel where
all inputs are 0 (:func:`mrsynth.data.background.outside_inputs_to_zero`, the rule ``eval`` scores with).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from mrsynth.data.background import outside_inputs_to_zero
from mrsynth.errors import InputError
from mrsynth.pipeline.slices import SliceWindow

if TYPE_CHECKING:
    import torch

Progress = Callable[[int, int], None]
"""progress(slices_done, slices_total), called after every batch."""


def predict(network: "torch.nn.Module", stack: np.ndarray, *, device: str, batch_size: int, tta: bool,
            slice_size: tuple[int, ...], progress: Progress | None = None) -> np.ndarray:
    """(Z, Y, X) synthesis in [0, 1] of a (Z, C, Y, X) stack: each slice cut to the model's window
    (:class:`SliceWindow`), run under ``torch.inference_mode``, with ``tta`` averaged with its mirror image
    (:func:`mirrored_mean`), and pasted back."""
    import torch

    window = SliceWindow.fit(stack, slice_size)
    synthesis = np.zeros((stack.shape[0], *stack.shape[2:]), dtype=np.float32)
    active = np.flatnonzero(stack.reshape(stack.shape[0], -1).any(axis=1))

    def forward(batch: "torch.Tensor") -> np.ndarray:
        return _forward(network, batch, device, batch_size)

    done = 0
    with torch.inference_mode():
        for start in range(0, len(active), batch_size):
            index = active[start:start + batch_size]
            batch = torch.from_numpy(window.cut(stack[index])).to(device)
            predicted = mirrored_mean(forward, batch) if tta else forward(batch)
            window.paste(predicted, synthesis, index)
            done += len(index)
            if progress is not None:
                progress(done, len(active))
    return outside_inputs_to_zero(synthesis, stack)


def mirrored_mean(forward: Callable[["torch.Tensor"], np.ndarray], batch: "torch.Tensor") -> np.ndarray:
    """Test-time augmentation: the mean of ``forward`` on (B, C, Y, X) slices and on their left-right mirror
    images, mirrored back. Left-right only, because that is the flip training draws (the last axis,
    :mod:`mrsynth.training.augment`): the model has learnt both orientations, and averaging them cancels part of
    its error; an up-down mirror is a view it never saw (docs/training.md measures both)."""
    return 0.5 * (forward(batch) + forward(batch.flip(-1))[..., ::-1])


def _forward(network: "torch.nn.Module", batch: "torch.Tensor", device: str, batch_size: int) -> np.ndarray:
    """One batch through the network; float16 autocast on GPU, with a float32 retry if it overflows."""
    import torch

    try:
        with _autocast(device):
            output = network(batch)[:, 0].float()
        if device.startswith("cuda") and not torch.isfinite(output).all():
            output = network(batch)[:, 0].float()
    except torch.cuda.OutOfMemoryError:
        raise InputError("--batch-size", f"out of GPU memory at batch size {batch_size}",
                         "use a smaller --batch-size") from None
    return output.clamp_(0.0, 1.0).cpu().numpy()


@contextlib.contextmanager
def _autocast(device: str) -> Iterator[None]:
    if device.startswith("cuda"):
        import torch

        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield
