"""What one training iteration costs in memory and compute, estimated before the run starts.

Why: the defaults are the paper's GPU recipe (paper widths, pix2pix, batch 16, full slices): by this estimate 15.9
GiB and 9.7 TFLOP per iteration at 256x256 (a user measured ~16 GB and ~4 minutes per iteration on a 2-core CPU),
and nothing used to say so before the machine started swapping.
The estimate replays one iteration of the trainer (generator, the framework's discriminator step, generator step
with pGAN's frozen VGG16) on the ``meta`` device, which records shapes but computes nothing, so it takes a
fraction of a second at any size:

* memory: every tensor autograd saves for the backward pass (the generator's graph lives while the discriminator
  step builds its own) plus weights, gradients and Adam's two moments (16 bytes per parameter);
* compute: ``torch.utils.flop_counter`` over the forward and backward passes, grouped convolutions counted as the
  dense convolutions they run as.

Transient buffers (the backward pass's gradient maps, allocator slack) are left out. Checked against the peak RSS
of one real iteration on CPU: tiny/L1/batch 8/128 px 0.5 GiB estimated, 0.50 GiB measured; light/pix2pix/batch 4/
128 px 0.7 GiB estimated, 0.58 GiB measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mrsynth.models import ModelConfig, build_model
from mrsynth.ops import cpu_stem
from mrsynth.training.config import TrainConfig
from mrsynth.training.frameworks import FRAMEWORK_CLASSES
from mrsynth.training.perceptual import vgg16_features

GIB = 2**30
BYTES_PER_PARAMETER = 16  # float32 weight, gradient and Adam's exp_avg and exp_avg_sq
HEAVY_BYTES = 4 * GIB
HEAVY_FLOPS = 1e12
"""Above either figure a CPU run is not a starter run. The recipe suggested instead (tiny preset, 128 px crops,
batch 8, L1) costs ~0.5 GiB and ~0.07 TFLOP per iteration by this estimate: the thresholds are ~8x and ~14x that."""


@dataclass(frozen=True)
class IterationCost:
    """Estimated peak memory (bytes) and floating-point operations of one training iteration in one process."""

    memory_bytes: int
    flops: int

    @property
    def heavy(self) -> bool:
        return self.memory_bytes > HEAVY_BYTES or self.flops > HEAVY_FLOPS

    def describe(self) -> str:
        return f"{self.memory_bytes / GIB:.1f} GiB and {self.flops / 1e12:.2f} TFLOP per iteration"


class _SavedBytes:
    """Sums the bytes of the tensors autograd saves for backward while it is active."""

    def __init__(self) -> None:
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.total += tensor.numel() * tensor.element_size()
        return tensor

    def hooks(self) -> Any:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)


def estimate_iteration(model_config: ModelConfig, config: TrainConfig, slice_size: tuple[int, int]) -> IterationCost:
    """Replay one iteration of the trainer's step on the meta device (see the module docstring)."""
    height, width = (config.crop, config.crop) if config.crop else slice_size
    batch, in_channels = config.batch_size, model_config.in_channels
    with torch.device("meta"):
        generator = build_model(model_config)
        framework = FRAMEWORK_CLASSES[config.framework]
        disc = framework.discriminator(model_config)
        vgg = vgg16_features(config.vgg_layer).requires_grad_(False) if config.framework == "pgan" else None
        x = torch.empty(batch, in_channels, height, width)
        y = torch.empty(batch, model_config.out_channels, height, width)
    g_saved, d_saved = _SavedBytes(), _SavedBytes()

    def judged(image: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, image), 1) if framework.conditional else image

    with FlopCounterMode(display=False) as counter, cpu_stem.suspended():
        with g_saved.hooks():
            fake = generator(x)
        loss = (fake - y).abs().mean()
        if disc is not None:
            with d_saved.hooks():  # the discriminator step's graph, alive together with the generator's
                pairs = torch.cat((judged(fake.detach()), judged(y)), 0)
                disc(pairs).mean().backward()
            loss = loss + disc(judged(fake)).mean()
        if vgg is not None:  # pGAN's perceptual term: the target's features without a graph, the synthesis' with
            with torch.no_grad():
                vgg(y.expand(-1, 3, -1, -1))
            with g_saved.hooks():
                loss = loss + vgg(fake.expand(-1, 3, -1, -1)).mean()
        loss.backward()
    parameters = sum(p.numel() for module in (generator, disc) if module is not None for p in module.parameters())
    frozen = sum(p.numel() for p in vgg.parameters()) if vgg is not None else 0  # float32 weights only
    return IterationCost(memory_bytes=g_saved.total + d_saved.total + BYTES_PER_PARAMETER * parameters + 4 * frozen,
                         flops=int(counter.get_total_flops()))


def physical_memory_bytes() -> int | None:
    """This machine's RAM (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
