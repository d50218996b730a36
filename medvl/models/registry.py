"""Registry of towers: ``register_tower`` / ``create_tower`` / ``list_towers`` (timm-style, no if-chains).

A tower factory takes keyword arguments (its typed config's fields) and returns a :class:`~medvl.models.tower.Tower`.
Every registered name has a tiny variant (``tiny=True`` entries) used by the tests, which run one forward pass over
the whole registry. Named model configurations (``create_model("tiny-clip")``) are a separate registry,
:mod:`medvl.models.zoo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medvl.errors import ConfigError
from medvl.registry import Registry

__all__ = ["TOWERS", "TowerEntry", "create_tower", "get_tower_entry", "list_towers", "register_tower"]


@dataclass(frozen=True)
class TowerEntry:
    name: str
    modality: str
    factory: Callable[..., Any]
    tiny: bool
    description: str
    example_input: Callable[[Any], Any] | None = None  # builds a small batch for the registry test


#: modules whose import registers the built-in towers (imported on first use: torch-heavy)
BUILTIN_MODULES = (
    "medvl.models.text",
    "medvl.models.image",
    "medvl.models.volume",
    "medvl.models.bag",
    "medvl.models.abmil",
    "medvl.models.tabular",
    "medvl.models.pretrained",
)

TOWERS: Registry[TowerEntry] = Registry("tower", builtins=BUILTIN_MODULES)


def register_tower(
    name: str,
    modality: str,
    *,
    tiny: bool = False,
    description: str = "",
    example_input: Callable[[Any], Any] | None = None,
):
    """Decorator registering a tower factory under ``name``."""

    def decorator(factory):
        TOWERS.add(name, TowerEntry(name, modality, factory, tiny, description or (factory.__doc__ or "").strip(),
                                    example_input))
        return factory

    return decorator


def list_towers(modality: str | None = None, tiny: bool | None = None) -> list[str]:
    return sorted(
        n
        for n, e in TOWERS.items()
        if (modality is None or e.modality == modality) and (tiny is None or e.tiny == tiny)
    )


def get_tower_entry(name: str) -> TowerEntry:
    return TOWERS.get(name)


def create_tower(name: str, **kwargs: Any):
    """Build a registered tower; unknown names raise a clear error listing the known ones."""
    entry = get_tower_entry(name)
    try:
        return entry.factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"tower '{name}': {exc}") from None
