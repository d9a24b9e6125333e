"""The small, serialisable description of a generator that travels inside every checkpoint.

A checkpoint must rebuild its network without any command-line flag, so every architectural choice
(width, groups, which stages carry CAGR, ablation switches) lives here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

STAGES: tuple[str, ...] = ("down1", "down2", "down3", "body", "up1", "up2", "up3")
"""ResUnet stages in data-flow order; ``up1`` is the 256-channel stage right after the body."""

AGI_NET_STAGES: tuple[str, ...] = ("down1", "down2", "down3", "body", "up1")
"""Stages whose ResBlocks get CAGR as first conv in AGI-Net (paper Sec. 3.3, Table 7's best row)."""

ARCHITECTURES: tuple[str, ...] = ("agi-net", "resunet", "deform-resunet", "arc-resunet")
"""ResUnet with CAGR, with plain convs, and the paper's Table 4 comparisons: a deformable convolution (DCNv2) or an
Adaptive Rotated Convolution in exactly CAGR's slots (``cagr_stages``)."""

REPLACING_CONV: dict[str, str] = {"agi-net": "cagr", "deform-resunet": "deform", "arc-resunet": "arc"}
"""The conv each architecture puts in the replaced slots (a plain ResUnet replaces none)."""

WIDTH_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "paper": (64, 128, 256, 512),  # Tables 5 and 7: 17.0 M (ResUnet) / 19.15 M (AGI-Net, n = 8)
    "light": (32, 64, 128, 256),  # a quarter of the parameters and FLOPs, for CPU inference
    "tiny": (16, 32, 64, 128),  # CPU training of starter models and tests
}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a generator (ResUnet, AGI-Net, Deform-ResUnet or ARC-ResUnet)."""

    arch: str = "agi-net"
    in_channels: int = 2
    out_channels: int = 1
    widths: tuple[int, ...] = WIDTH_PRESETS["paper"]
    blocks_per_stage: int = 2
    groups: int = 8  # n: CAGR's groups; for arc-resunet ARC's number of rotated kernels; unused otherwise
    cagr_stages: tuple[str, ...] = field(default=AGI_NET_STAGES)  # the replaced slots, whichever conv fills them
    attention: bool = True  # Cross Group Attention (False: the GR-only ablation)
    rolling: bool = True  # Group-wise Rolling (False: the CA-only ablation)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "cagr_stages", tuple(self.cagr_stages))
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.groups < 1:
            raise ValueError(f"n (groups or kernels) must be at least 1, got {self.groups}")
        if len(self.widths) != 4:
            raise ValueError(f"widths must list 4 stage widths, got {self.widths}")
        unknown = set(self.cagr_stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        if self.arch == "agi-net":
            for stage in self.cagr_stages:
                width = self.stage_width(stage)
                if width % self.groups:
                    raise ValueError(f"stage {stage} has {width} channels, not divisible by {self.groups} groups")
            if not (self.attention or self.rolling):
                raise ValueError("an AGI-Net without attention and rolling is a ResUnet: use arch='resunet'")

    def stage_width(self, stage: str) -> int:
        """Channel count of a stage's ResBlocks."""
        index = {"down1": 0, "down2": 1, "down3": 2, "body": 3, "up1": 2, "up2": 1, "up3": 0}[stage]
        return self.widths[index]

    @property
    def replaced_stages(self) -> tuple[str, ...]:
        """Stages whose ResBlocks' first convs are replaced (none for a plain ResUnet)."""
        return self.cagr_stages if self.arch in REPLACING_CONV else ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        data["cagr_stages"] = list(self.cagr_stages)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config key(s): {sorted(unknown)}")
        return cls(**data)

    def with_(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A config with a named width preset (``paper``, ``light``, ``tiny``)."""
    if name not in WIDTH_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(WIDTH_PRESETS)}")
    return ModelConfig(widths=WIDTH_PRESETS[name], **overrides)
