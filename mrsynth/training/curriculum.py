"""mmGAN's curriculum over the number of missing contrasts (Sharma and Hamarneh 2019): easy scenarios first.

The first half of the iterations is split into ``max_missing`` equal phases; phase k shows only scenarios with
exactly k contrasts missing (1, then 2, ...). The second half draws the number missing uniformly from 1 to
``max_missing``, so the model ends up trained on every scenario. Which contrasts are missing is uniform among the
subsets of that size. Every draw is a function of (seed, iteration, rank), so a resumed run sees the same masks.
"""

from __future__ import annotations

import torch


def missing_count(iteration: int, iters: int, max_missing: int, generator: torch.Generator) -> int:
    """How many contrasts one sample of a 0-based ``iteration`` misses (see the module docstring)."""
    half = iters // 2
    if iteration < half:
        return min(max_missing, 1 + iteration * max_missing // half)
    return 1 + int(torch.randint(max_missing, (), generator=generator))


def draw_present(batch: int, contrasts: int, iteration: int, iters: int, max_missing: int, seed: int,
                 rank: int = 0) -> torch.Tensor:
    """(batch, contrasts) bool: True where a contrast is present (an input), False where it is to be imputed."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + iteration * 7_919 + rank * 104_729) % (2**63 - 1))
    present = torch.ones(batch, contrasts, dtype=torch.bool)
    for row in range(batch):
        count = missing_count(iteration, iters, max_missing, generator)
        present[row, torch.randperm(contrasts, generator=generator)[:count]] = False
    return present
