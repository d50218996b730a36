"""Lazy package exports: a package names what it offers; each name's module is imported on first use.

Keeps ``import medvl.<package>`` light (torch, openslide, faiss load only when a name that needs them is touched).

Example:
    >>> __getattr__ = lazy_exports(__name__, {"open_slide": "medvl.io.slide"})  # in a package's __init__.py
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """Return a module-level ``__getattr__`` that resolves ``exports`` (name -> module) on first access."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
