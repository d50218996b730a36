"""Registry of towers: ``register_tower`` / ``create_tower`` / ``list_towers`` (timm-style, no if-chains).

A tower factory takes keyword arguments (its typed config's fields) and returns a :class:`~medvl.models.tower.Tower`.
Every registered name has a tiny variant (``tiny=True`` entries) used by the tests, which run one forward pass over
the whole registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medvl.errors import ConfigError


@dataclass(frozen=True)
class TowerEntry:
    name: str
    modality: str
    factory: Callable[..., Any]
    tiny: bool
    description: str
    example_input: Callable[[Any], Any] | None = None  # builds a small batch for the registry test


_REGISTRY: dict[str, TowerEntry] = {}


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
        if name in _REGISTRY:
            raise ValueError(f"tower '{name}' is already registered")
        _REGISTRY[name] = TowerEntry(name, modality, factory, tiny, description or (factory.__doc__ or "").strip(),
                                     example_input)
        return factory

    return decorator


def _ensure_builtin() -> None:
    """Import the modules that register the built-in towers (kept lazy: torch-heavy)."""
    import importlib
    import importlib.util

    for module in BUILTIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


#: modules whose import registers towers
BUILTIN_MODULES = (
    "medvl.models.text",
    "medvl.models.image",
    "medvl.models.volume",
    "medvl.models.bag",
    "medvl.models.tabular",
    "medvl.models.pretrained",
)


def list_towers(modality: str | None = None, tiny: bool | None = None) -> list[str]:
    _ensure_builtin()
    return sorted(
        n
        for n, e in _REGISTRY.items()
        if (modality is None or e.modality == modality) and (tiny is None or e.tiny == tiny)
    )


def get_tower_entry(name: str) -> TowerEntry:
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown tower '{name}'; known towers: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_tower(name: str, **kwargs: Any):
    """Build a registered tower; unknown names raise a clear error listing the known ones."""
    entry = get_tower_entry(name)
    try:
        return entry.factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"tower '{name}': {exc}") from None


# ---------------------------------------------------------------------------------------------- named models
#: model name -> function returning its ``ModelConfig`` (registered by ``medvl.models.zoo``)
_MODELS: dict[str, Callable[[], Any]] = {}


def register_model(name: str):
    """Decorator registering a function that returns a :class:`~medvl.models.multimodal.ModelConfig` under ``name``."""

    def decorator(fn):
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        _MODELS[name] = fn
        return fn

    return decorator


def _ensure_models() -> None:
    import importlib

    importlib.import_module("medvl.models.zoo")


def list_models() -> list[str]:
    """Names accepted by :func:`medvl.models.create_model` (besides checkpoint directories)."""
    _ensure_models()
    return sorted(_MODELS)


def get_model_config(name: str):
    """The :class:`ModelConfig` registered under ``name``; a clear error listing the known names otherwise."""
    _ensure_models()
    if name not in _MODELS:
        known = ", ".join(sorted(_MODELS))
        raise ConfigError(f"unknown model '{name}'; known models: {known} (or a checkpoint folder)")
    return _MODELS[name]()
