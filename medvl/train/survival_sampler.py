"""``sampler: event-balanced``: survival batches that always hold events.

A shuffled batch of a cohort with few events often has one event or none, and a Cox loss on it is zero or noise.
Each batch here takes ``round(event_fraction * batch_size)`` (at least one) cases with an event, the rest censored,
both drawn without replacement from shuffled pools that refill when they run out. The epoch has
``len(dataset) // batch_size`` batches, drawn from (seed, epoch) like every sampler, so resume and any number of
processes see the same global batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.train.samplers import register_sampler

__all__ = ["EventBalancedOptions", "EventBalancedSampler"]


class EventBalancedSampler:
    """Batches with a fixed share of events (see the module docstring)."""

    def __init__(self, events: Sequence[bool], batch_size: int, seed: int = 0, event_fraction: float = 0.5):
        ev = [i for i, e in enumerate(events) if e]
        cens = [i for i, e in enumerate(events) if not e]
        if not ev:
            raise ConfigError("sampler 'event-balanced': the dataset has no events")
        if not 0.0 < event_fraction <= 1.0:
            raise ConfigError("sampler 'event-balanced': event_fraction must be in (0, 1]")
        if len(events) < batch_size:
            raise ConfigError(f"batch_size {batch_size} is larger than the dataset ({len(events)} items)")
        self.events, self.censored = ev, cens
        self.batch_size, self.seed = batch_size, seed
        self.k = max(1, round(event_fraction * batch_size)) if cens else batch_size
        self.n = len(events)

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        pools: dict[str, list[int]] = {"events": [], "censored": []}

        def draw(name: str, members: list[int], k: int) -> list[int]:
            out: list[int] = []
            while len(out) < k:
                if not pools[name]:
                    pools[name] = [members[i] for i in torch.randperm(len(members), generator=rng).tolist()]
                pick = pools[name].pop()
                if pick not in out:
                    out.append(pick)
                elif len(members) <= len(out):
                    break
            return out

        result = []
        for _ in range(len(self)):
            batch = draw("events", self.events, self.k)
            batch += draw("censored", self.censored, self.batch_size - len(batch)) if self.censored else []
            result.append(batch)
        return result


@dataclass
class EventBalancedOptions(Config):
    """Options of the ``event-balanced`` sampler.

    Attributes:
        event_fraction: share of each batch drawn from the cases with an event (at least one case).
    """

    event_fraction: float = 0.5

    def validate(self) -> None:
        if not 0.0 < self.event_fraction <= 1.0:
            raise ConfigError("EventBalancedOptions.event_fraction: must be in (0, 1]")


@register_sampler("event-balanced", EventBalancedOptions)
def _event_balanced(dataset: Any, batch_size: int, groups_per_batch: int, seed: int, options: EventBalancedOptions):
    if getattr(dataset, "event", None) is None:
        raise ConfigError("sampler 'event-balanced' needs a dataset with survival events")
    return EventBalancedSampler(list(dataset.event), batch_size, seed, options.event_fraction)
