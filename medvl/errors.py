"""Errors a user can act on.

Library code raises these with a message that names the file (or key) and the problem; the command line prints the
message as one line on stderr and exits non-zero, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedvlError(Exception):
    """Base class of errors that carry a message meant for the user."""

    exit_code = 2


class InputError(MedvlError):
    """An input file or folder is missing, unreadable, or not what the command expects."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class ConfigError(MedvlError):
    """A configuration value is unknown, missing, or of the wrong type."""


class MissingDependencyError(MedvlError):
    """An optional package is needed for this feature."""

    def __init__(self, package: str, extra: str | None = None, feature: str | None = None):
        hint = f'pip install "medvl[{extra}]"' if extra else f"pip install {package}"
        what = f" for {feature}" if feature else ""
        super().__init__(f"the package '{package}' is needed{what}; install it with: {hint}")
        self.package = package


def reason(exc: BaseException) -> str:
    """An exception's message for an error line: one line, at most 200 characters, a ``KeyError`` without the quotes
    ``str`` adds, and the exception's type name when it has no message."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return " ".join(str(text).split())[:200] or type(exc).__name__


def require(module: str, extra: str | None = None, feature: str | None = None):
    """Import an optional module or raise :class:`MissingDependencyError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, feature) from exc
