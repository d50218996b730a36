"""Towers (text, image, volume, bag, tabular), the registry that builds them, and multi-modal models.

``create_model(name_or_checkpoint_dir)`` returns a :class:`MultiModalModel`; ``list_models()`` names the registered
configurations; ``list_towers()`` the registered towers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvl.lazy import lazy_exports
from medvl.models.registry import (
    create_tower,
    get_model_config,
    get_tower_entry,
    list_models,
    list_towers,
    register_model,
    register_tower,
)

__all__ = [
    "ModelConfig",
    "MultiModalModel",
    "Tower",
    "TowerSpec",
    "create_model",
    "create_tower",
    "get_model_config",
    "get_tower_entry",
    "list_models",
    "list_towers",
    "load_checkpoint",
    "register_model",
    "register_tower",
    "save_checkpoint",
]


def create_model(name_or_checkpoint_dir: str | Path | Any, device: str = "cpu") -> Any:
    """Build a :class:`MultiModalModel` from a registered name, a checkpoint folder, or a ``ModelConfig``."""
    from medvl.models.checkpoint import create_model_from

    return create_model_from(name_or_checkpoint_dir, device)



# torch-heavy names load on first use
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("ModelConfig", "MultiModalModel", "TowerSpec"), "medvl.models.multimodal"),
        **dict.fromkeys(("load_checkpoint", "save_checkpoint"), "medvl.models.checkpoint"),
        "Tower": "medvl.models.tower",
    },
)
