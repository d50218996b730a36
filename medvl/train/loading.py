"""This process's batches of one epoch, collated, optionally decoded by DataLoader worker processes.

The sampler fixes the epoch's global batches; each process takes its contiguous slice of every batch and each item
is drawn with a generator seeded from (seed, epoch, index), so the batches are the same with or without workers and
a resumed run starts at the saved batch. With ``workers > 0`` a ``torch.utils.data.DataLoader`` reads and collates
whole batches in worker processes (files decoded there, ``prefetch`` batches ahead), in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from medvl.train.data.registry import collate

__all__ = ["local_batches"]


class _EpochBatches(torch.utils.data.Dataset):
    """Batch ``j`` = this process's items of the epoch's global batch ``start + j``, collated."""

    def __init__(self, dataset: Any, batches: list[list[int]], start: int, rank: int, world: int, seed: int):
        self.dataset, self.batches, self.start = dataset, batches, start
        self.rank, self.world, self.seed = rank, world, seed

    def __len__(self) -> int:
        return len(self.batches) - self.start

    def __getitem__(self, j: int) -> dict[str, Any]:
        indices = self.batches[self.start + j]
        n = len(indices) // self.world
        local = indices[self.rank * n:(self.rank + 1) * n]
        return collate([self.dataset.item(i, torch.Generator().manual_seed(self.seed + i)) for i in local])


def local_batches(dataset: Any, batches: list[list[int]], start: int, rank: int, world: int, seed: int,
                  workers: int = 0, prefetch: int = 2) -> Iterator[dict[str, Any]]:
    """The batches ``start..`` of one epoch for process ``rank`` of ``world``."""
    epoch = _EpochBatches(dataset, batches, start, rank, world, seed)
    if workers <= 0:
        yield from (epoch[j] for j in range(len(epoch)))
        return
    loader = torch.utils.data.DataLoader(epoch, batch_size=None, shuffle=False, num_workers=workers,
                                         prefetch_factor=prefetch, persistent_workers=False)
    yield from loader
