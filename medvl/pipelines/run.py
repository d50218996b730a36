"""``run_pipeline``: validate the manifest, prepare the model, run every case on a backend, then the cohort steps.

Nothing runs until every manifest row is valid: all problems (missing files, unknown modalities, duplicate ids, bad
time/event values, ids unusable as file names) go to ``<run>/manifest_errors.json`` and one error names the count.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json, sweep_temporaries
from medvl.batch import counts, failure, write_error_report
from medvl.errors import InputError
from medvl.io.manifest import MAX_REPORTED, Manifest, validate_manifest
from medvl.log import get_logger, progress
from medvl.pipelines.backends import get_backend
from medvl.pipelines.cohort import plan_cohort_steps, run_cohort_steps
from medvl.pipelines.config import PipelineConfig
from medvl.pipelines.context import CaseContext, RunLayout, RunSpec, materialise_model, model_fingerprint, model_folder
from medvl.pipelines.runner import case_from_dict, case_to_dict, plan_case, skipped_record
from medvl.workspace import Workspace

log = get_logger(__name__)

__all__ = ["check_manifest", "plan_pipeline", "run_pipeline"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_manifest(config: PipelineConfig, report_dir: Path) -> Manifest:
    """Validate every row before any work; all problems are written to ``manifest_errors.json``."""
    manifest, problems = validate_manifest(config.manifest, unique_ids=True, allowed=tuple(config.steps))
    for row in manifest.rows:
        if not _SAFE_ID.match(row.case_id):
            problems.append(f"row {row.row}: case_id '{row.case_id}' cannot name output files "
                            "(use letters, digits, '.', '_', '-')")
    if problems:
        report = atomic_write_json(report_dir / "manifest_errors.json", {"manifest": str(config.manifest),
                                                                          "problems": problems})
        shown = "; ".join(problems[:MAX_REPORTED])
        more = f"; ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise InputError(config.manifest, f"{len(problems)} bad row(s), nothing was run: {shown}{more} "
                                          f"(full list: {report})")
    if not manifest.rows:
        raise InputError(config.manifest, "the manifest has no rows")
    return manifest


def _prepare(config: PipelineConfig, workspace: Workspace) -> tuple[RunSpec, Manifest]:
    layout = RunLayout(workspace.runs / config.name, workspace.volumes)
    layout.root.mkdir(parents=True, exist_ok=True)
    manifest = check_manifest(config, layout.root)
    layout.create()
    for folder in (layout.features, layout.ct, layout.zeroshot, layout.volumes):
        sweep_temporaries(folder)
    config.to_file(layout.root / "run_config.json")
    model_dir, fingerprint = materialise_model(config.model, workspace.models)
    spec = RunSpec(config.to_dict(), str(layout.root), str(layout.volumes), str(model_dir), fingerprint)
    return spec, manifest


def _split(ctx: CaseContext, cases: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records of the cases with nothing left to do, the cases to run), from the run state alone (no torch)."""
    done, todo = [], []
    for case in cases:
        try:
            record = skipped_record(case_from_dict(case), plan_case(ctx, case_from_dict(case)))
        except Exception:  # noqa: BLE001 - an unreadable input is reported by run_case in a worker
            record = None
        (done if record is not None else todo).append(record if record is not None else case)
    return done, todo


def run_pipeline(
    config: PipelineConfig,
    workspace: str | Path | None = None,
    backend: str = "local",
    skip_errors: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run a cohort pipeline; returns the summary (also written to ``<run>/summary.json``).

    Cases whose every step is finished are answered from the run state without starting a worker or loading a
    model; only the others go to the backend.

    Args:
        config: the pipeline.
        workspace: workspace folder (default: ``$MEDVL_WORKSPACE`` or the user data dir).
        backend: ``local`` or ``ray``.
        skip_errors: record failing cases in ``<run>/errors.json`` and go on; without it the first failure stops
            the run (finished cases stay finished) and is raised.
        on_record: called with each case's status record as it finishes.
    """
    ws = Workspace.resolve(workspace, create=True)
    runner = get_backend(backend)
    spec, manifest = _prepare(config, ws)
    layout = spec.layout()
    ctx = CaseContext(spec)
    cases = [case_to_dict(r) for r in manifest.rows]
    start = time.perf_counter()
    finished, todo = _split(ctx, cases)
    for record in finished:
        if on_record is not None:
            on_record(record)
    records, stopped = _run_cases(runner, spec, todo, config.workers, skip_errors, on_record) if todo else ([], None)
    records = finished + records
    elapsed = time.perf_counter() - start
    if stopped is not None:
        raise InputError(None, f"case {stopped['case_id']} failed at step {stopped['step']}: {stopped['error']} "
                               "(finished cases are kept; rerun to resume, or pass --skip-errors)")
    order = {c["case_id"]: i for i, c in enumerate(cases)}
    records.sort(key=lambda r: order[r["case_id"]])
    ok_rows = [case_from_dict(cases[order[r["case_id"]]]) for r in records if r["status"] != "error"]
    cohort = run_cohort_steps(ctx, ok_rows) if ok_rows else {}
    return _summary(config, backend, layout, records, cohort, elapsed, spec)


def plan_pipeline(config: PipelineConfig, workspace: str | Path | None = None) -> dict[str, Any]:
    """What ``run_pipeline`` would run, from the run state alone (``medvl run --dry-run``); writes nothing.

    Returns ``{"cases": [{case_id, modality, run: [steps], skip: [steps]}], "cohort": {step: run|skip},
    "counts": {...}}``. The manifest is validated as for a run.
    """
    ws = Workspace.resolve(workspace, create=False)
    root = ws.runs / config.name
    manifest, problems = validate_manifest(config.manifest, unique_ids=True, allowed=tuple(config.steps))
    if problems:
        raise InputError(config.manifest, f"{len(problems)} bad row(s): {'; '.join(problems[:MAX_REPORTED])}")
    from medvl.models.checkpoint import is_checkpoint

    folder = model_folder(config.model, ws.models)
    built = is_checkpoint(folder)
    spec = RunSpec(config.to_dict(), str(root), str(ws.volumes), str(folder),
                   model_fingerprint(folder) if built else "not built yet")
    ctx = CaseContext(spec)
    plans = []
    for row in manifest.rows:
        steps = plan_case(ctx, row, write=False)
        plans.append({"case_id": row.case_id, "modality": row.modality,
                      "run": [n for n, _, done in steps if done is None],
                      "skip": [n for n, _, done in steps if done is not None]})
    todo = sum(bool(p["run"]) for p in plans)
    cohort = plan_cohort_steps(ctx, list(manifest.rows)) if not todo else dict.fromkeys(config.cohort_steps, "run")
    return {"pipeline": config.name, "run_dir": str(root), "model": str(folder), "model_built": built,
            "cases": plans, "cohort": cohort, "counts": {"to_run": todo, "finished": len(plans) - todo}}


def _run_cases(runner: Any, spec: RunSpec, cases: list[dict[str, Any]], workers: int, skip_errors: bool,
               on_record: Callable[[dict[str, Any]], None] | None) -> tuple[list[dict[str, Any]], dict | None]:
    records: list[dict[str, Any]] = []
    stream = runner.run(spec, cases, workers)
    try:
        for record in progress(stream, total=len(cases), desc=f"medvl run ({runner.name})", unit="case"):
            records.append(record)
            for warning in record.get("warnings", []):  # met in a worker process: printed and listed here
                log.warning("%s", warning)
            if on_record is not None:
                on_record(record)
            if record["status"] == "error":
                log.warning("case %s failed at step %s: %s", record["case_id"], record["step"], record["error"])
                if not skip_errors:
                    return records, record
    finally:
        stream.close()
    return records, None


def _summary(config: PipelineConfig, backend: str, layout: RunLayout, records: list[dict[str, Any]],
             cohort: dict[str, Any], elapsed: float, spec: RunSpec) -> dict[str, Any]:
    status = counts(records)
    errors = [failure(r["case_id"], r["error"], step=r["step"]) for r in records if r["status"] == "error"]
    processed = status.get("done", 0)
    summary: dict[str, Any] = {
        "pipeline": config.name, "backend": backend, "workers": config.workers, "run_dir": str(layout.root),
        "model": spec.model_dir, "cases": len(records), "counts": status, "seconds": round(elapsed, 3),
        "cases_per_hour": round(processed * 3600 / elapsed, 1) if processed and elapsed > 0 else None,
        "cohort": cohort, "records": records,
    }
    report = write_error_report(layout.root / "errors.json", errors)
    if report is not None:
        summary["error_report"] = str(report)
    atomic_write_json(layout.root / "summary.json", summary)
    return summary
