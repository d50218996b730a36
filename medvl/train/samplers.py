"""Batch samplers (a registry). Each returns the *global* batches of one epoch, deterministically from (seed, epoch).

Every process asks for the same global batch and takes its own contiguous slice, so N processes see exactly the
batch one process would, and a resumed run can skip the batches it already used.

A sampler is registered with ``@register_sampler(name, Options)`` as a factory
``fn(dataset, batch_size, groups_per_batch, seed, options) -> sampler``; the sampler has ``batches(epoch) ->
list[list[int]]`` (item indices of every global batch of that epoch) and ``__len__`` (batches per epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.registry import Registry

__all__ = ["SAMPLERS", "DistinctSampler", "GroupBalancedSampler", "ShuffledSampler", "build_sampler",
           "register_sampler"]

#: name -> (typed options class, factory)
SAMPLERS: Registry[tuple[type[Config], Callable[..., Any]]] = Registry(
    # add the modules of new samplers here
    "sampler", builtins=("medvl.train.samplers", "medvl.train.survival_sampler"))


def register_sampler(name: str, options: type[Config]):
    """Register ``factory(dataset, batch_size, groups_per_batch, seed, options)`` under ``name``."""

    def decorator(factory):
        SAMPLERS.add(name, (options, factory))
        return factory

    return decorator


@dataclass
class NoOptions(Config):
    """A sampler without options."""


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


class DistinctSampler:
    """Batches of distinct items, drawn independently for every batch (uniformly or by the dataset's
    ``sample_weights``); a ``sibling_fraction`` share of each batch are siblings of the items drawn first (the
    dataset's ``siblings()``: hard negatives). An epoch is ``len(dataset) // batch_size`` batches."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, weights: Sequence[float] | None = None,
                 siblings: Sequence[Sequence[int]] | None = None, sibling_fraction: float = 0.0):
        if n < batch_size:
            raise ConfigError(f"batch_size {batch_size} is larger than the dataset ({n} items)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.weights = torch.as_tensor(weights, dtype=torch.float64) if weights is not None else None
        self.siblings, self.sibling_fraction = siblings, sibling_fraction

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def _first(self, k: int, rng: torch.Generator) -> list[int]:
        if self.weights is None:
            return torch.randperm(self.n, generator=rng)[:k].tolist()
        return torch.multinomial(self.weights, k, replacement=False, generator=rng).tolist()

    def _batch(self, rng: torch.Generator) -> list[int]:
        n_first = self.batch_size - int(self.batch_size * self.sibling_fraction)
        batch = self._first(n_first, rng)
        chosen = set(batch)
        for item in list(batch) if self.siblings is not None else ():
            if len(batch) >= self.batch_size:
                break
            options = [j for j in self.siblings[item] if j not in chosen]
            if options:
                pick = options[int(torch.randint(len(options), (), generator=rng))]
                chosen.add(pick)
                batch.append(pick)
        if len(batch) < self.batch_size:  # too few siblings: fill with other items
            rest = [i for i in torch.randperm(self.n, generator=rng).tolist() if i not in chosen]
            batch += rest[: self.batch_size - len(batch)]
        return batch

    def batches(self, epoch: int) -> list[list[int]]:
        rng = _generator(self.seed, epoch)
        return [self._batch(rng) for _ in range(len(self))]


@register_sampler("shuffled", NoOptions)
def _shuffled(dataset: Any, batch_size: int, groups_per_batch: int, seed: int, options: NoOptions):
    return ShuffledSampler(len(dataset), batch_size, seed)


@register_sampler("group-balanced", NoOptions)
def _group_balanced(dataset: Any, batch_size: int, groups_per_batch: int, seed: int, options: NoOptions):
    if not hasattr(dataset, "group_ids"):
        raise ConfigError("sampler 'group-balanced' needs a dataset with knowledge groups")
    if groups_per_batch <= 0 or batch_size % groups_per_batch:
        raise ConfigError(f"batch_size {batch_size} must be a multiple of groups_per_batch {groups_per_batch}")
    return GroupBalancedSampler(dataset.group_ids, groups_per_batch, batch_size // groups_per_batch, seed)


@dataclass
class DistinctOptions(Config):
    """Options of the ``distinct`` sampler.

    Attributes:
        weighted: draw items in proportion to the dataset's ``sample_weights`` (graph groups: 1 + synonyms).
        sibling_fraction: share of each batch filled with siblings of the other items (the dataset's ``siblings()``).
    """

    weighted: bool = False
    sibling_fraction: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.sibling_fraction < 1.0:
            raise ConfigError("DistinctOptions.sibling_fraction: must be within [0, 1)")


@register_sampler("distinct", DistinctOptions)
def _distinct(dataset: Any, batch_size: int, groups_per_batch: int, seed: int, options: DistinctOptions):
    weights = getattr(dataset, "sample_weights", None) if options.weighted else None
    if options.weighted and weights is None:
        raise ConfigError("sampler 'distinct': weighted needs a dataset with sample_weights")
    siblings = None
    if options.sibling_fraction:
        if not hasattr(dataset, "siblings"):
            raise ConfigError("sampler 'distinct': sibling_fraction needs a dataset with siblings()")
        siblings = dataset.siblings()
    return DistinctSampler(len(dataset), batch_size, seed, weights, siblings, options.sibling_fraction)


def build_sampler(kind: str, dataset: Any, batch_size: int, groups_per_batch: int, seed: int,
                  options: dict[str, Any] | None = None):
    """The registered sampler ``kind`` over ``dataset`` (options checked against its options class)."""
    opt_cls, factory = SAMPLERS.get(kind)
    try:
        opts = opt_cls.from_dict(options or {})
    except ConfigError as exc:
        raise ConfigError(f"sampler '{kind}': {exc}") from None
    return factory(dataset, batch_size, groups_per_batch, seed, opts)
