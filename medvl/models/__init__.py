"""Towers (text, image, volume, bag, tabular), the registry that builds them, and multi-modal models.

``create_model(name_or_checkpoint_dir)`` returns a :class:`MultiModalModel`; ``list_models()`` names the registered
configurations (:mod:`medvl.models.zoo`); ``list_towers()`` the registered towers (:mod:`medvl.models.registry`).
"""

from __future__ import annotations

from medvl.lazy import lazy_exports
from medvl.models.registry import create_tower, get_tower_entry, list_towers, register_tower

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

# torch-heavy names load on first use
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("ModelConfig", "MultiModalModel", "TowerSpec"), "medvl.models.multimodal"),
        **dict.fromkeys(("get_model_config", "list_models", "register_model"), "medvl.models.zoo"),
        **dict.fromkeys(("create_model", "load_checkpoint"), "medvl.models.factory"),
        "save_checkpoint": "medvl.models.checkpoint",
        "Tower": "medvl.models.tower",
    },
)
