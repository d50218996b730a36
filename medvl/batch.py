"""One policy for every batch of cases: the per-case record, the error message, ``--skip-errors`` and the exit code.

The slide cohort runner (:func:`medvl.pathology.pipeline.run_cohort`), CT preprocessing and embedding
(:mod:`medvl.radiology`) and the pipeline runner (:mod:`medvl.pipelines`) all go through it, so a failing case reads
and exits the same whichever command met it:

- a case that fails becomes :func:`failure` (``status: error``, ``error``: one line of at most
  :data:`MESSAGE_CHARS` characters naming the file, optionally ``step``);
- without ``skip_errors`` the first failure stops the batch with that message (:meth:`BatchPolicy.fail` raises);
  with it the batch goes on and the record is kept (and written to ``errors.json`` where the command has an output
  folder);
- a batch in which some cases failed exits with :data:`EXIT_SOME_FAILED` (3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.errors import InputError, MedvlError
from medvl.log import get_logger

log = get_logger(__name__)

__all__ = ["EXIT_SOME_FAILED", "MESSAGE_CHARS", "BatchPolicy", "counts", "error_message", "exit_code", "failure",
           "write_error_report"]

#: exit status of a batch command in which some cases failed (the others finished)
EXIT_SOME_FAILED = 3
#: longest error message kept per case
MESSAGE_CHARS = 300


def error_message(exc: BaseException, path: str | Path | None = None) -> str:
    """One line naming the file and the problem, cut at :data:`MESSAGE_CHARS`.

    medvl's own errors keep their message; any other exception is shown with its type, as a problem of ``path``.
    """
    if isinstance(exc, MedvlError):
        text = str(exc)
    else:
        text = str(InputError(path, f"{type(exc).__name__}: {exc}"))
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def failure(case_id: str, message: str, id_key: str = "case_id", **extra: Any) -> dict[str, Any]:
    """The record of a failed case: ``{id_key: case_id, "status": "error", "error": message, **extra}``."""
    return {id_key: case_id, "status": "error", "error": message, **extra}


@dataclass(frozen=True)
class BatchPolicy:
    """What a batch does when a case fails.

    Attributes:
        skip_errors: record the failure and go on (``--skip-errors``); otherwise stop at the first one.
    """

    skip_errors: bool = False

    def fail(self, case_id: str, exc: BaseException, where: str | Path | None = None, id_key: str = "case_id",
             **extra: Any) -> dict[str, Any]:
        """The failure record of ``case_id``, or (without ``skip_errors``) one clear error that stops the batch.

        Args:
            case_id: the case.
            exc: what went wrong.
            where: the file an exception that is not medvl's own is reported against.
            id_key: the record's id field (``case_id``; ``slide_id`` for slide batches).
            extra: more fields of the record (e.g. ``path``, ``step``).
        """
        message = error_message(exc, where)
        if not self.skip_errors:
            raise _Stopped(message) from exc
        log.warning("%s failed: %s", case_id, message)
        return failure(case_id, message, id_key, **extra)


class _Stopped(MedvlError):
    """The first failure of a batch run without ``--skip-errors`` (the message is the case's error line)."""


def counts(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Number of records per status."""
    out: dict[str, int] = {}
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def exit_code(records: Iterable[dict[str, Any]]) -> int:
    """:data:`EXIT_SOME_FAILED` when a record failed, else 0."""
    return EXIT_SOME_FAILED if any(r.get("status") == "error" for r in records) else 0


def write_error_report(path: str | Path, records: Iterable[dict[str, Any]]) -> Path | None:
    """Write the failed records to ``path`` (JSON, atomically); ``None`` when none failed."""
    from medvl.atomic import atomic_write_json

    failed = [r for r in records if r.get("status") == "error"]
    return atomic_write_json(path, failed) if failed else None
