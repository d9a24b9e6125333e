"""What one synthesis produced, as the Python API returns it and as ``--json`` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import SimpleITK as sitk


@dataclass
class SynthesisResult:
    """What one synthesis produced and what the user should know about it."""

    subject: str
    image: "sitk.Image"
    output: Path | None
    preview: Path | None
    reference: str
    inputs: dict[str, str]
    scenario: str
    device: str
    seconds: float
    slices: int
    warnings: list[str] = field(default_factory=list)
    intensity: str = "normalised"
    """``normalised`` (the target's [0, 1] scale) or ``matched to <scan>`` (``--match-intensity``)."""
    tta: bool = False
    stages: list[str] = field(default_factory=list)
    """The pipeline stages that ran, in order (:mod:`mrsynth.pipeline`): a skipped stage is not listed."""
    mask: "sitk.Image | None" = None
    """The brain mask applied (uint8 on the reference grid), from ``--mask`` or ``--skull-strip``; None without."""

    def record(self) -> dict[str, Any]:
        """The JSON line of ``--json``."""
        return {
            "subject": self.subject, "status": "ok", "output": path_text(self.output),
            "preview": path_text(self.preview), "reference": self.reference, "inputs": self.inputs,
            "scenario": self.scenario, "target": self.scenario.rpartition("->")[2], "device": self.device,
            "seconds": round(self.seconds, 3), "slices": self.slices, "intensity": self.intensity,
            "tta": self.tta, "stages": self.stages, "warnings": self.warnings,
        }


def path_text(path: Path | None) -> str | None:
    """A path for JSON: its text, or null."""
    return None if path is None else str(path)
