"""Towers (text, image, volume, bag, tabular), the registry that builds them, and multi-modal models."""

from medvl.models.registry import create_tower, get_tower_entry, list_towers, register_tower
from medvl.models.tower import Tower

__all__ = ["Tower", "create_tower", "get_tower_entry", "list_towers", "register_tower"]
