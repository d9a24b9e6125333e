"""The training recipe as one serialisable record: stored in the resume state and in every checkpoint.

Why a dataclass and not loose flags: ``--resume`` must continue with exactly the recipe the run started with,
and a bundled model's card must be able to say how it was trained without anyone re-reading shell history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mrsynth.training.perceptual import FEATURE_LAYERS

FRAMEWORKS = ("pix2pix", "l1", "pgan", "mmgan", "medsynth")
ADVERSARIAL = frozenset({"pix2pix", "pgan", "mmgan", "medsynth"})
LR_SCHEDULES = ("constant", "cosine", "linear")
SELECT_METRICS = ("psnr", "ssim", "mae")


def check_rotation(degrees: float) -> None:
    """The rotation augmentation's bound must lie in [0, 180] degrees (U(-180, 180) already covers every angle)."""
    if not 0 <= degrees <= 180:
        raise ValueError(f"rotation augmentation must be in [0, 180] degrees, got {degrees}")


@dataclass
class TrainConfig:
    """Everything that determines a run besides the data and the generator's architecture.

    Defaults are the paper's (Sec. 4.1: Adam, lr 1e-4, batch 16, 120k iterations; pix2pix with lambda_L1 = 100,
    the value of pix2pix, which the paper uses unchanged as far as it says).
    """

    framework: str = "pix2pix"
    iters: int = 120_000
    batch_size: int = 16  # per process; DDP multiplies it by the world size
    lr: float = 1e-4
    lr_schedule: str = "constant"
    lambda_l1: float = 100.0  # pix2pix and pgan
    lambda_ssim: float = 0.0  # l1 and pix2pix: weight of an added (1 - SSIM) term; 0 = off
    lambda_perc: float = 100.0  # pgan: weight of the perceptual loss (Dar et al. 2019)
    vgg_layer: str = "relu1_2"  # pgan: the VGG16 feature maps the perceptual loss compares
    vgg_weights: str | None = None  # pgan: a local VGG16 weights file (None: torchvision's cache or download)
    max_missing: int | None = None  # mmgan: most contrasts missing at once (None: all but one)
    seed: int = 0
    crop: int | None = None  # random square crops inside the brain's bounding box (cheap CPU training)
    flip: bool = True  # random left-right flips
    shift_px: float = 0.0  # misalignment augmentation: translate one random input by up to this many px
    gamma: float = 0.0  # input intensity augmentation: each input ** exp(U(-gamma, gamma)); 0 = off
    scale: tuple[float, float] | None = None  # in-plane zoom augmentation: factor ~ U(low, high); None = off
    bias: float = 0.0  # input bias-field augmentation: max |coefficient| of the log-polynomial field; 0 = off
    rotate: float = 0.0  # in-plane rotation augmentation: angle ~ U(-rotate, rotate) degrees; 0 = off
    target_median: bool = False  # train on targets scaled to one median; outputs standardised (data.target_median)
    amp: bool = False
    val_every: int = 1000
    save_every: int = 1000
    log_every: int = 10
    select_metric: str = "psnr"
    val_batch_size: int = 8
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (data, licence, ...)

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {self.framework!r}; choose one of {', '.join(FRAMEWORKS)}")
        if self.vgg_layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown VGG16 layer {self.vgg_layer!r}; choose one of {', '.join(FEATURE_LAYERS)}")
        if self.lambda_ssim < 0:
            raise ValueError(f"lambda_ssim must be non-negative, got {self.lambda_ssim}")
        if self.lambda_perc < 0:
            raise ValueError(f"lambda_perc must be non-negative, got {self.lambda_perc}")
        if self.max_missing is not None and self.max_missing < 1:
            raise ValueError(f"max_missing must be at least 1, got {self.max_missing}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"unknown metric {self.select_metric!r}; choose one of {', '.join(SELECT_METRICS)}")
        for name in ("iters", "batch_size", "val_every", "save_every", "log_every", "val_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.crop is not None and self.crop < 8:
            raise ValueError(f"crop must be at least 8 px, got {self.crop}")
        if self.shift_px < 0:
            raise ValueError(f"shift must be non-negative, got {self.shift_px}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma augmentation must be in [0, 1] (max |log gamma|), got {self.gamma}")
        if not 0 <= self.bias <= 2:
            raise ValueError(f"bias-field augmentation must be in [0, 2] (max |coefficient|), got {self.bias}")
        if self.scale is not None:
            self.scale = (float(self.scale[0]), float(self.scale[1]))  # a resume state stores a JSON list
            if not 0.1 <= self.scale[0] <= self.scale[1] <= 4:
                raise ValueError(f"scale augmentation needs 0.1 <= low <= high <= 4, got {self.scale[0]},{self.scale[1]}")
        check_rotation(self.rotate)

    @property
    def adam_betas(self) -> tuple[float, float]:
        """pix2pix's (0.5, 0.999) stabilises the adversarial game (every GAN framework here builds on it); plain
        L1 regression uses Adam's defaults."""
        return (0.5, 0.999) if self.framework in ADVERSARIAL else (0.9, 0.999)

    def lr_at(self, iteration: int) -> float:
        """Learning rate for a 0-based iteration: a pure function of it, so a resumed run needs no scheduler state."""
        progress = min(iteration / self.iters, 1.0)
        if self.lr_schedule == "cosine":
            import math

            return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.lr_schedule == "linear":  # pix2pix: constant for the first half, then linearly to zero
            return self.lr * min(1.0, 2.0 * (1.0 - progress))
        return self.lr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
