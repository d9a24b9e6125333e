"""Which samples each rank reads at each iteration, and their augmentation: pure functions of (seed, position).

Why not ``DistributedSampler`` + a shuffling ``DataLoader``: resuming must reproduce the uninterrupted run bit for
bit, and DataLoader iterator state cannot be saved. Here the global sample stream is a concatenation of seeded
permutations of the dataset, position ``p`` of the stream is fixed forever, iteration ``t`` of a run with world
size ``W`` and per-rank batch ``B`` consumes positions ``[t*W*B, (t+1)*W*B)`` and rank ``r`` takes the ``r``-th
block of ``B`` of them. Each sample's augmentation is drawn from a generator seeded by its position, so workers,
restarts and the number of ranks cannot change what a position means.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def positions_for(iteration: int, rank: int, world_size: int, batch_size: int) -> range:
    """Global stream positions that ``rank`` consumes at ``iteration``."""
    start = (iteration * world_size + rank) * batch_size
    return range(start, start + batch_size)


class ShardedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, from ``start_iteration`` to ``iters``, this rank's batch as ``(dataset index, stream position)``.

    The position travels with the index so the dataset wrapper can seed that sample's augmentation from it.
    """

    def __init__(
        self, n: int, batch_size: int, iters: int, seed: int, rank: int = 0, world_size: int = 1, start_iteration: int = 0
    ) -> None:
        if n < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.batch_size, self.iters, self.seed = n, batch_size, iters, seed
        self.rank, self.world_size, self.start_iteration = rank, world_size, start_iteration
        self._cache: tuple[int, torch.Tensor] | None = None

    def index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, _permutation(self.n, self.seed, epoch))
        return int(self._cache[1][offset])

    def batch_at(self, iteration: int) -> list[tuple[int, int]]:
        return [(self.index_at(p), p) for p in positions_for(iteration, self.rank, self.world_size, self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start_iteration, self.iters):
            yield self.batch_at(iteration)

    def __len__(self) -> int:
        return max(0, self.iters - self.start_iteration)
