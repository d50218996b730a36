"""One registry class for every table of named things: towers, models, losses, datasets, pipeline and demo steps.

A registry maps a name to an entry. Registering a name twice is an error; looking up an unknown name raises a
:class:`~medvl.errors.ConfigError` that lists the known names. A registry may name the modules whose import registers
its built-in entries: they are imported on first use (they are often torch-heavy), never guarded, so a misspelt
module name fails loudly instead of silently dropping entries.

Example:
    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("infonce")
    ... def infonce(inputs): ...
    >>> LOSSES.get("clip")
    Traceback (most recent call last):
    medvl.errors.ConfigError: unknown loss 'clip'; known: infonce
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from medvl.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what an entry is, for messages (``"tower"``, ``"loss"``).
        builtins: modules whose import registers the built-in entries (imported once, on first lookup or listing).
        hint: appended to the unknown-name error (e.g. ``" (or a checkpoint folder)"``).
    """

    def __init__(self, kind: str, builtins: Sequence[str] = (), hint: str = ""):
        self.kind = kind
        self.builtins = tuple(builtins)
        self.hint = hint
        self._entries: dict[str, T] = {}
        self._loaded = not self.builtins

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered twice is a :class:`ConfigError`."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add` (the decorated object is the entry)."""

        def decorator(entry: T) -> T:
            return self.add(name, entry)

        return decorator

    def load_builtins(self) -> None:
        """Import the modules that register the built-in entries (once)."""
        if self._loaded:
            return
        self._loaded = True  # set first: a built-in module may list the registry while it registers
        try:
            for module in self.builtins:
                importlib.import_module(module)
        except BaseException:
            self._loaded = False
            raise

    def get(self, name: str) -> T:
        """The entry registered under ``name``; unknown names raise a :class:`ConfigError` listing the known ones."""
        self.load_builtins()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}{self.hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self.load_builtins()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        self.load_builtins()
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self.load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load_builtins()
        return len(self._entries)
