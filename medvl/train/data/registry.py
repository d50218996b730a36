"""The dataset registry, the interface every training dataset implements, and the collate function.

A training dataset is a class built from a typed options :class:`~medvl.config.Config` and registered with
``@register_dataset(name, Options)``. It has:

- ``fields``: ``{field: modality}`` for every input field an item carries (``{"image": "image", "text": "text"}``);
- ``__len__`` and ``item(index, rng) -> dict`` of fields; ``rng`` is a ``torch.Generator`` seeded from (seed, epoch,
  index), so augmentation is reproducible and a resumed run draws exactly what an uninterrupted run would. A field
  may hold a list of values (several positives of one anchor);
- ``texts()``: every text an item may carry (for pre-computed and cached embeddings).

Optional parts, used where a recipe asks for them: ``group_ids`` (one knowledge group per item), ``group_relatives``
(``[G, G]`` bool: hierarchy relatives), ``group_names`` (one label per group) for the group-balanced sampler and the
knowledge-group loss; ``group_texts`` (one text per group, e.g. each concept's name) for the ``bank`` loss;
``sample_weights`` and ``siblings`` for the ``distinct`` sampler; ``linking_queries`` for the synonym-linking
evaluation. Datasets of images or volumes declare ``preprocessing`` (modality -> the transform config they apply) and
``domains`` (modality -> :class:`~medvl.models.domain.DataDomain`): the trainer saves both in the checkpoint
(:mod:`medvl.train.recording`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.registry import Registry

__all__ = ["DATASETS", "TrainDataset", "build_dataset", "collate", "list_datasets", "pad_bags", "register_dataset"]


class TrainDataset(Protocol):
    """What the trainer needs from a dataset (see the module docstring for the optional parts)."""

    fields: ClassVar[dict[str, str]]

    def __len__(self) -> int: ...

    def item(self, index: int, rng: torch.Generator) -> dict[str, Any]: ...

    def texts(self) -> list[str]: ...


#: name -> (typed options class, dataset class); built-ins register on first use
DATASETS: Registry[tuple[type[Config], Callable[..., Any]]] = Registry(
    "dataset", builtins=("medvl.train.data.breastmnist", "medvl.train.data.graph_groups", "medvl.train.data.ct",
                         "medvl.train.data.bags", "medvl.train.data.text_pairs", "medvl.train.data.manifest",
                         "medvl.train.data.shards", "medvl.train.data.text_corpus"))


def register_dataset(name: str, options: type[Config]):
    """Register a dataset class built from a typed options config (``cls(options)``)."""

    def decorator(cls):
        DATASETS.add(name, (options, cls))
        return cls

    return decorator


def list_datasets() -> list[str]:
    return DATASETS.names()


def build_dataset(name: str, options: dict[str, Any]) -> Any:
    """The registered dataset ``name`` built from its options (checked: unknown keys name the dataset)."""
    opt_cls, cls = DATASETS.get(name)
    try:
        opts = opt_cls.from_dict(options)
    except ConfigError as exc:
        raise ConfigError(f"dataset '{name}': {exc}") from None
    return cls(opts)


def dataset_options(name: str) -> type[Config]:
    """The options class of the registered dataset ``name``."""
    return DATASETS.get(name)[0]


def pad_bags(bags: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Bags of different lengths (mappings of ``[n, ...]`` tensors, with ``features``) padded to the longest, plus
    ``mask [B, N]`` (True = a real item)."""
    n = max(int(b["features"].shape[0]) for b in bags)
    out: dict[str, torch.Tensor] = {}
    for key in bags[0]:
        first = bags[0][key]
        padded = first.new_zeros((len(bags), n, *first.shape[1:]))
        for i, b in enumerate(bags):
            padded[i, : len(b[key])] = b[key]
        out[key] = padded
    lengths = torch.tensor([len(b["features"]) for b in bags])
    out["mask"] = torch.arange(n)[None, :] < lengths[:, None]
    return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, pad bags (mappings with ``features``), keep strings (and lists of strings) as lists, turn ints
    into a LongTensor."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], dict) and "features" in values[0]:
            out[key] = pad_bags(values)
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (bool, int, np.integer)):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        else:
            out[key] = values
    return out
