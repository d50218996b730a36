"""Logging and progress bars.

Everything human-facing goes to stderr; stdout is reserved for results (and JSON under ``--json``). Progress bars are
silent under ``--json`` or when the caller asks for quiet output.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_STATE = {"quiet": False}
LOGGER_NAME = "medvl"
#: the warnings of the running command, each once, in order (``--json`` output lists them under ``warnings``)
_WARNINGS: list[str] = []


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name.removeprefix('medvl.')}")


def setup_logging(level: str | int = "WARNING", quiet: bool = False) -> None:
    """Configure the ``medvl`` logger to write ``level: message`` lines to stderr."""
    _STATE["quiet"] = quiet
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    logger.propagate = False


def set_quiet(quiet: bool) -> None:
    _STATE["quiet"] = quiet


def is_quiet() -> bool:
    return _STATE["quiet"] or os.environ.get("MEDVL_NO_PROGRESS") == "1"


def warn(message: str) -> None:
    """A warning the user must see: on stderr once, and kept for the ``warnings`` list of ``--json`` output.

    The same message given again (a model's domain warning for every tile batch, every slide) is not repeated.
    """
    if message in _WARNINGS:
        return
    _WARNINGS.append(message)
    get_logger().warning(message)


def collected_warnings() -> list[str]:
    """The warnings :func:`warn` gave since the last :func:`clear_warnings` (the command line clears them per
    command)."""
    return list(_WARNINGS)


def clear_warnings() -> None:
    _WARNINGS.clear()


def progress(iterable: Iterable[T], total: int | None = None, desc: str | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap a long loop in a tqdm bar on stderr (silent when quiet)."""
    if is_quiet():
        yield from iterable
        return
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (batch logs stay clean); MEDVL_PROGRESS=1 forces it on
    disable = False if os.environ.get("MEDVL_PROGRESS") == "1" else None
    yield from tqdm(
        iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True, disable=disable
    )
