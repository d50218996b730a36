"""Workspace roots: the folders an app may open, and the resolver that keeps every choice inside them.

``medvl app`` passes ``MEDVL_APP_ROOTS`` (``os.pathsep``-separated folders) and ``MEDVL_WORKSPACE`` to the server.
The workspace picker offers only workspaces found inside those roots and accepts a typed path only when it resolves
(after following symlinks) to a folder inside one of them; ``..`` components are refused outright.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from medvl.errors import InputError
from medvl.workspace import ENV_VAR, SUBDIRS

ROOTS_ENV = "MEDVL_APP_ROOTS"
#: a folder counts as a workspace when it has a demo report or at least this many of the standard subfolders
MIN_SUBDIRS = 2
#: how deep below a root the picker looks for workspaces
SEARCH_DEPTH = 2


class OutsideRootsError(InputError):
    """A path that is not inside any allowed root (the tile endpoint answers it with 403)."""


def app_roots(env: Mapping[str, str] | None = None) -> list[Path]:
    """The allowed roots: ``MEDVL_APP_ROOTS``, else the folder of ``MEDVL_WORKSPACE``; resolved, existing, unique."""
    env = os.environ if env is None else env
    raw = [p for p in env.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    if not raw and env.get(ENV_VAR):
        raw = [env[ENV_VAR]]
    roots: list[Path] = []
    for item in raw:
        path = Path(item).expanduser().resolve()
        if path.is_dir() and path not in roots:
            roots.append(path)
    return roots


def is_workspace(path: Path) -> bool:
    """A folder that looks like a medvl workspace (demo report, or standard subfolders)."""
    if not path.is_dir():
        return False
    if (path / "demo_report.json").is_file():
        return True
    return sum((path / sub).is_dir() for sub in SUBDIRS) >= MIN_SUBDIRS


def inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the resolved ``path`` lies in (or is) one of the resolved ``roots``."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_in_roots(candidate: str | Path, roots: Sequence[Path]) -> Path:
    """Resolve a user-typed workspace path, refusing anything outside the allowed roots.

    Relative paths are taken relative to each root in turn. Symlinks are followed before the check, so a link
    inside a root that points elsewhere is refused.

    Raises:
        InputError: no roots, ``..`` in the path, outside every root, or not an existing folder.
    """
    text = str(candidate).strip()
    if not roots:
        raise InputError(None, "no workspace roots are configured (set MEDVL_APP_ROOTS)")
    if not text:
        raise InputError(None, "no workspace path given")
    path = Path(text).expanduser()
    if ".." in path.parts:
        raise InputError(text, "'..' is not allowed in a workspace path")
    options = [path] if path.is_absolute() else [root / path for root in roots]
    for option in options:
        resolved = option.resolve()
        if inside(resolved, roots):
            if not resolved.is_dir():
                raise InputError(text, "no such workspace folder")
            return resolved
    raise InputError(text, "outside the allowed workspace roots")


def resolve_file_in_roots(candidate: str | Path, roots: Sequence[Path]) -> Path:
    """Resolve a file path (a slide, a DICOM folder) the same way, refusing anything outside the allowed roots.

    The error messages do not repeat the path (the tile endpoint sends them to the browser).

    Raises:
        OutsideRootsError: no roots, ``..`` in the path, or outside every root.
        InputError: nothing at that path.
    """
    text = str(candidate).strip()
    if not roots:
        raise OutsideRootsError(None, "no workspace roots are configured (set MEDVL_APP_ROOTS)")
    if not text:
        raise InputError(None, "no path given")
    path = Path(text).expanduser()
    if ".." in path.parts:
        raise OutsideRootsError(None, "'..' is not allowed in a path")
    options = [path] if path.is_absolute() else [root / path for root in roots]
    for option in options:
        resolved = option.resolve()
        if inside(resolved, roots):
            if not resolved.exists():
                raise InputError(None, "no such file inside the workspace roots")
            return resolved
    raise OutsideRootsError(None, "outside the allowed workspace roots")


def find_workspaces(roots: Sequence[Path], depth: int = SEARCH_DEPTH, limit: int = 200) -> list[Path]:
    """Workspaces inside the roots (the roots themselves included), never following links out of them."""
    found: list[Path] = []

    def visit(folder: Path, level: int) -> None:
        if len(found) >= limit:
            return
        if is_workspace(folder) and folder not in found:
            found.append(folder)
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            resolved = child.resolve()
            if inside(resolved, roots):
                visit(resolved, level + 1)

    for root in roots:
        visit(root, 0)
    return found


def default_workspace(roots: Sequence[Path], env: Mapping[str, str] | None = None) -> Path | None:
    """``MEDVL_WORKSPACE`` when it lies inside the roots, else the first workspace found, else None."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR):
        try:
            return resolve_in_roots(env[ENV_VAR], roots)
        except InputError:
            pass
    found = find_workspaces(roots)
    return found[0] if found else None
