"""Batch samplers. Each returns the *global* batches of one epoch, deterministically from (seed, epoch).

Every process asks for the same global batch and takes its own contiguous slice, so N processes see exactly the
batch one process would, and a resumed run can skip the batches it already used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medvl.errors import ConfigError

__all__ = ["GroupBalancedSampler", "ShuffledSampler", "build_sampler"]


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class ShuffledSampler:
    """Shuffled pairs: a fresh permutation per epoch, cut into full batches."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if n < batch_size:
            raise ConfigError(f"batch_size {batch_size} is larger than the dataset ({n} items)")
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def __len__(self) -> int:
        return self.n // self.batch_size

    def batches(self, epoch: int) -> list[list[int]]:
        perm = torch.randperm(self.n, generator=_generator(self.seed, epoch)).tolist()
        return [perm[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]


class GroupBalancedSampler:
    """KEEP's batches: ``groups_per_batch`` groups x ``instances_per_group`` items of each.

    Groups are visited in a shuffled order; a group with fewer items than needed is cycled (reshuffled each time).
    """

    def __init__(self, group_ids: Sequence[int], groups_per_batch: int, instances_per_group: int, seed: int = 0):
        members: dict[int, list[int]] = {}
        for i, g in enumerate(group_ids):
            members.setdefault(int(g), []).append(i)
        if len(members) < groups_per_batch:
            raise ConfigError(f"groups_per_batch {groups_per_batch} exceeds the {len(members)} groups in the data")
        self.members = members
        self.G, self.K, self.seed = groups_per_batch, instances_per_group, seed
        self.batch_size = groups_per_batch * instances_per_group
        self.n = len(group_ids)

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = _generator(self.seed, epoch)
        keys = sorted(self.members)
        queues = {g: [] for g in keys}

        def take(g: int) -> list[int]:
            out: list[int] = []
            while len(out) < self.K:
                if not queues[g]:
                    items = self.members[g]
                    queues[g] = [items[i] for i in torch.randperm(len(items), generator=rng).tolist()]
                out.append(queues[g].pop())
            return out

        order: list[int] = []
        result = []
        for _ in range(len(self)):
            if len(order) < self.G:
                order += [keys[i] for i in torch.randperm(len(keys), generator=rng).tolist()]
            chosen, rest = [], []
            for g in order:  # G distinct groups, keeping the rest of the order for the next batch
                (chosen if len(chosen) < self.G and g not in chosen else rest).append(g)
            order = rest
            result.append([i for g in chosen for i in take(g)])
        return result


def build_sampler(kind: str, dataset, batch_size: int, groups_per_batch: int, seed: int,
                  options: dict | None = None):
    if kind == "event-balanced":
        from medvl.train.survival_sampler import EventBalancedSampler

        if getattr(dataset, "event", None) is None:
            raise ConfigError("sampler 'event-balanced' needs a dataset with survival events")
        unknown = sorted(set(options or {}) - {"event_fraction"})
        if unknown:
            raise ConfigError(f"sampler 'event-balanced': unknown option '{unknown[0]}' (known: event_fraction)")
        return EventBalancedSampler(list(dataset.event), batch_size, seed, **(options or {}))
    if kind == "group-balanced":
        if not hasattr(dataset, "group_ids"):
            raise ConfigError("sampler 'group-balanced' needs a dataset with knowledge groups")
        if groups_per_batch <= 0 or batch_size % groups_per_batch:
            raise ConfigError(f"batch_size {batch_size} must be a multiple of groups_per_batch {groups_per_batch}")
        return GroupBalancedSampler(dataset.group_ids, groups_per_batch, batch_size // groups_per_batch, seed)
    return ShuffledSampler(len(dataset), batch_size, seed)
