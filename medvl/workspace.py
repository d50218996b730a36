"""The workspace: one folder that holds a user's features, volumes, models, index and runs.

Resolved in one place, in this order: an explicit path (``--workspace``), the ``MEDVL_WORKSPACE`` environment
variable, then ``<user data dir>/medvl/workspace``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medvl.errors import InputError

ENV_VAR = "MEDVL_WORKSPACE"
SUBDIRS = ("features", "volumes", "models", "index", "runs", "graph", "slides", "ct", "tables", "cache")


def default_workspace() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("medvl", appauthor=False)) / "workspace"


def resolve_workspace(path: str | Path | None = None) -> Path:
    """Return the workspace path chosen by argument, environment or default (not created)."""
    if path:
        return Path(path).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return default_workspace()


@dataclass(frozen=True)
class Workspace:
    """Paths inside a workspace folder."""

    root: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None, create: bool = False) -> Workspace:
        ws = cls(resolve_workspace(path))
        if create:
            ws.create()
        return ws

    def create(self) -> Workspace:
        try:
            for sub in SUBDIRS:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(self.root, f"cannot create workspace ({exc.strerror})") from None
        return self

    def exists(self) -> bool:
        return self.root.is_dir()

    def __getattr__(self, name: str) -> Path:
        if name in SUBDIRS:
            return self.root / name
        raise AttributeError(name)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)
