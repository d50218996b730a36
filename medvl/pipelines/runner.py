"""The per-case function every backend runs: the case's steps in order, skipping finished (case, step) pairs.

:func:`run_case` never raises for a failing case: it returns a record with ``status: error`` and the message, so a
worker process or Ray actor keeps going; the driver decides whether to stop (no ``--skip-errors``) or record it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medvl.batch import error_message, failure
from medvl.io.manifest import ManifestRow
from medvl.log import collect_warnings, get_logger
from medvl.pipelines.context import CaseContext
from medvl.pipelines.state import CaseState, input_fingerprint
from medvl.pipelines.steps import STEPS

log = get_logger(__name__)

__all__ = ["case_from_dict", "case_to_dict", "plan_case", "run_case", "skipped_record"]


def case_to_dict(row: ManifestRow) -> dict[str, Any]:
    """A manifest row as plain JSON-able data (it crosses process and Ray boundaries)."""
    extra = {k: _plain(v) for k, v in row.extra.items()}
    return {"row": row.row, "case_id": row.case_id, "modality": row.modality, "path": str(row.path), "extra": extra}


def case_from_dict(data: dict[str, Any]) -> ManifestRow:
    return ManifestRow(row=int(data["row"]), case_id=data["case_id"], modality=data["modality"],
                       path=Path(data["path"]), extra=dict(data.get("extra") or {}))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def plan_case(ctx: CaseContext, row: ManifestRow, write: bool = True) -> list[tuple[str, str, dict[str, Any] | None]]:
    """The case's steps in order as ``(step, key, finished record or None)``; reads only small state files.

    Needs no model and no torch: a rerun with nothing to do is answered from this alone. ``write=False``: do not
    store the input's content hash (a dry run writes nothing).
    """
    state = CaseState(ctx.layout.state / row.case_id)
    input_hash = input_fingerprint(row.path, state.folder / "input.json", write=write)
    keys: dict[str, str] = {}
    plan = []
    for step_name in ctx.config.steps.get(row.modality, []):
        step = STEPS[row.modality].get(step_name)
        step_cfg = {"settings": step.config(ctx.config), "model": ctx.spec.model_fingerprint}
        keys[step_name] = state.key(step_name, input_hash, step_cfg, [keys[n] for n in step.needs])
        plan.append((step_name, keys[step_name], state.finished(step_name, keys[step_name])))
    return plan


def skipped_record(row: ManifestRow, plan: list[tuple[str, str, dict[str, Any] | None]]) -> dict[str, Any] | None:
    """The ``skipped`` record of a case whose every step is finished, else ``None``."""
    if not plan or any(done is None for _, _, done in plan):
        return None
    return {"case_id": row.case_id, "modality": row.modality, "steps": {name: "skipped" for name, _, _ in plan},
            "results": {name: done for name, _, done in plan}, "status": "skipped", "seconds": 0.0}


def run_case(ctx: CaseContext, case: dict[str, Any], only: frozenset[str] | None = None) -> dict[str, Any]:
    """Run one case's steps; returns its status record (``done``, ``skipped`` or ``error``).

    Args:
        ctx: the worker's context.
        case: the case as :func:`case_to_dict` wrote it.
        only: run only the leading steps named here and stop at the first other one (the prefetch of a worker
            runs a case's reading steps ahead while the previous case is being encoded).
    """
    row = case_from_dict(case)
    start = time.perf_counter()
    record: dict[str, Any] = {"case_id": row.case_id, "modality": row.modality, "steps": {}, "results": {}}
    state = CaseState(ctx.layout.state / row.case_id)
    with collect_warnings() as warned:
        _run_steps(ctx, row, state, record, only)
    if warned:
        record["warnings"] = warned
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def _run_steps(ctx: CaseContext, row: ManifestRow, state: CaseState, record: dict[str, Any],
               only: frozenset[str] | None) -> None:
    step_name = "input"
    try:
        for step_name, key, done in plan_case(ctx, row):
            if only is not None and step_name not in only:
                break
            if done is not None:
                record["steps"][step_name] = "skipped"
                record["results"][step_name] = done
                continue
            t0 = time.perf_counter()
            out = STEPS[row.modality].get(step_name).fn(ctx, row)
            state.finish(step_name, key, out.record, out.outputs, time.perf_counter() - t0)
            record["steps"][step_name] = "done"
            record["results"][step_name] = out.record
    except Exception as exc:  # noqa: BLE001 - a failing case becomes a record; the driver decides what to do
        log.debug("case failed", exc_info=True)
        record.update(failure(row.case_id, error_message(exc, row.path), step=step_name))
    else:
        skipped = record["steps"] and all(v == "skipped" for v in record["steps"].values())
        record["status"] = "skipped" if skipped else "done"
