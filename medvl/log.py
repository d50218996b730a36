"""Logging, warnings and progress bars.

Everything human-facing goes to stderr; stdout is reserved for results (and JSON under ``--json``). Progress bars are
silent under ``--json`` or when the caller asks for quiet output.

Warnings have one route: library code calls ``get_logger(__name__).warning(...)``. The command line prints each
distinct warning once on stderr (:func:`setup_logging`) and lists the same messages in the ``warnings`` of its
``--json`` output (:func:`collect_warnings`); a worker process hands its case's warnings to the driver in the case
record, and the driver logs them again (printed and listed once, whichever process met them).
"""

from __future__ import annotations

import contextlib
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


class _Formatter(logging.Formatter):
    """``warning: message`` and ``error: message`` (as the command line's error lines); ``INFO:``/``DEBUG:`` else."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower() if record.levelno >= logging.WARNING else record.levelname
        return f"{level}: {record.getMessage()}"


class _OncePerMessage(logging.Filter):
    """Lets each distinct warning (or error) message through once; information and debug lines always pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


class _Collector(logging.Handler):
    """Keeps the distinct warning messages logged while it is attached, in order."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        if record.levelno == logging.WARNING and message not in self.messages:
            self.messages.append(message)


def setup_logging(level: str | int = "WARNING", quiet: bool = False) -> None:
    """Configure the ``medvl`` logger to write ``level: message`` lines to stderr (``warning: ...``), each warning
    once."""
    _STATE["quiet"] = quiet
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(_OncePerMessage())
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    logger.propagate = False


def silence_logging() -> None:
    """No log output from this process (a worker whose warnings travel to the driver in its records)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.addHandler(logging.NullHandler())
    logger.propagate = False


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Collect the distinct warnings logged by medvl inside the block (they are still printed as configured)."""
    collector = _Collector()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)


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
