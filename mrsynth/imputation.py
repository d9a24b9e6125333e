"""MM-GAN's imputation contract (Sharma and Hamarneh 2019): one generator for any subset of missing contrasts.

The generator takes every contrast of a fixed set, in the set's order, with each missing one filled with zeros
(the background value of the normalised [0, 1] slices), and outputs every contrast of the set; the imputed set
keeps the real images where they were present and takes the generator's where they were missing.

Which contrasts are present is MM-GAN's scenario code, one bit per contrast of the set in its order (1 = present):
``1011`` for t1,t1c,t2,flair says that t1c is missing. A checkpoint trained this way carries the contract under the
metadata key ``imputation`` (see :meth:`ImputationSpec.to_dict`), and its ``scenario`` reads ``t1,t1c,t2,flair->any``;
:mod:`mrsynth.inference` wraps such a model in :class:`Imputer` for one concrete scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

ANY_TARGET = "any"
"""The target of a scenario that stands for "any missing contrast of the set" (``t1,t1c,t2,flair->any``)."""

FILL_VALUE = 0.0
CODE_CONVENTION = "one bit per contrast in the listed order: 1 = present (real input), 0 = missing (zero-filled)"


@dataclass(frozen=True)
class ImputationSpec:
    """The contrast set, how many of them may be missing at once, and the fill of a missing one."""

    contrasts: tuple[str, ...]
    max_missing: int
    fill: float = FILL_VALUE

    def __post_init__(self) -> None:
        object.__setattr__(self, "contrasts", tuple(self.contrasts))
        if len(self.contrasts) < 2:
            raise ValueError(f"imputation needs at least 2 contrasts, got {list(self.contrasts)}")
        if not 1 <= self.max_missing <= len(self.contrasts) - 1:
            raise ValueError(f"max missing must be 1 to {len(self.contrasts) - 1} for {len(self.contrasts)} "
                             f"contrasts (one at least must be present), got {self.max_missing}")

    def code(self, present: list[str] | tuple[str, ...]) -> str:
        """MM-GAN's scenario code of a set of present contrasts, e.g. ``1011``."""
        return "".join("1" if c in present else "0" for c in self.contrasts)

    def scenario(self, target: str, available: list[str] | None = None) -> list[str]:
        """The present contrasts (in the set's order) when ``target`` is synthesised from what is ``available``.

        ValueError names the problem: a target outside the set, or more contrasts missing than the model learned.
        """
        if target not in self.contrasts:
            raise ValueError(f"this model imputes {', '.join(self.contrasts)}, not {target}")
        present = [c for c in self.contrasts if c != target and (available is None or c in available)]
        missing = len(self.contrasts) - len(present)
        if missing > self.max_missing:
            absent = [c for c in self.contrasts if c not in present and c != target]
            raise ValueError(f"the model was trained with at most {self.max_missing} of {', '.join(self.contrasts)} "
                             f"missing; {target} and {', '.join(absent)} make {missing}")
        return present

    def to_dict(self) -> dict[str, Any]:
        return {"contrasts": list(self.contrasts), "max_missing": self.max_missing, "fill": self.fill,
                "code": CODE_CONVENTION, "outputs": "every contrast, in the listed order"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImputationSpec":
        return cls(tuple(data["contrasts"]), int(data["max_missing"]), float(data.get("fill", FILL_VALUE)))


def zero_fill(full: Tensor, present: Tensor, fill: float = FILL_VALUE) -> Tensor:
    """``full`` (B, N, H, W) with the channels where ``present`` (B, N) is False replaced by ``fill``."""
    keep = present[:, :, None, None].to(full.dtype)
    return full * keep + fill * (1 - keep)


def impute(real: Tensor, generated: Tensor, present: Tensor) -> Tensor:
    """MM-GAN's imputed set: the real image where a contrast was present, the generator's where it was missing."""
    return torch.where(present[:, :, None, None], real, generated)


class Imputer(nn.Module):
    """An imputation generator seen as an ordinary ``present -> target`` model: (B, len(present), H, W) in the
    order of ``present``, zero-filled into the full set, -> (B, 1, H, W), the target's channel of the output."""

    def __init__(self, generator: nn.Module, spec: ImputationSpec, present: list[str], target: str) -> None:
        super().__init__()
        self.generator = generator
        self.config = getattr(generator, "config", None)
        positions = [spec.contrasts.index(c) for c in present]
        self.register_buffer("positions", torch.tensor(positions, dtype=torch.long), persistent=False)
        self.channels = len(spec.contrasts)
        self.fill = spec.fill
        self.target_index = spec.contrasts.index(target)

    def forward(self, x: Tensor) -> Tensor:
        full = x.new_full((x.shape[0], self.channels, *x.shape[2:]), self.fill)
        full[:, self.positions] = x
        return self.generator(full)[:, self.target_index : self.target_index + 1]
