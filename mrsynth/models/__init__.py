"""Generators (ResUnet, AGI-Net and the Table 4 comparisons), the PatchGAN discriminator and ``build_model``.

Nothing here knows about files or the command line: a notebook can build, train and run these directly.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mrsynth.models.arc import AdaptiveRotatedConv2d
from mrsynth.models.cagr import CAGR
from mrsynth.models.config import ARCHITECTURES, REPLACING_CONV, STAGES, WIDTH_PRESETS, ModelConfig, preset
from mrsynth.models.deform import DeformConv2d
from mrsynth.models.discriminator import PatchGAN
from mrsynth.models.resunet import ResUnet, conv3x3

__all__ = [
    "ARCHITECTURES",
    "CAGR",
    "AdaptiveRotatedConv2d",
    "DeformConv2d",
    "STAGES",
    "WIDTH_PRESETS",
    "ModelConfig",
    "PatchGAN",
    "ResUnet",
    "build_model",
    "preset",
]


def build_model(config: ModelConfig | dict[str, Any]) -> nn.Module:
    """The generator a config describes: a ResUnet whose chosen stages' first convs are CAGR modules (AGI-Net),
    DCNv2 (Deform-ResUnet) or ARC (ARC-ResUnet), or none of them (ResUnet)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    replaced = set(config.replaced_stages)
    conv = REPLACING_CONV.get(config.arch)

    def first_conv(stage: str, channels: int) -> nn.Module:
        if stage not in replaced:
            return conv3x3(channels, channels)
        if conv == "deform":
            return DeformConv2d(channels, channels)
        if conv == "arc":
            return AdaptiveRotatedConv2d(channels, channels, kernels=config.groups)
        return CAGR(channels, channels, groups=config.groups, attention=config.attention, rolling=config.rolling)

    model = ResUnet(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        widths=config.widths,
        blocks_per_stage=config.blocks_per_stage,
        first_conv=first_conv,
    )
    model.config = config  # type: ignore[assignment]
    return model
