"""``medvl run PIPELINE.yaml``: a whole cohort pipeline over a manifest, resumable, on a local or Ray backend."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from medvl.cli.common import Result, WorkspaceOpt, command, emit_line

app = typer.Typer()


def _text(summary: dict) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
    rate = f", {summary['cases_per_hour']} cases/hour" if summary.get("cases_per_hour") else ""
    lines = [f"{summary['pipeline']} ({summary['backend']}, {summary['workers']} worker(s)): {summary['cases']} "
             f"case(s): {counts} in {summary['seconds']:.1f} s{rate}"]
    for r in summary["records"]:
        steps = " ".join(f"{k}:{v}" for k, v in r["steps"].items())
        extra = f" - {r['error']}" if r["status"] == "error" else ""
        lines.append(f"  {r['case_id']} [{r['modality']}] {r['status']} ({steps}){extra}")
    for name, rec in summary["cohort"].items():
        lines.append(f"  cohort {name}: {rec.get('status')}")
    if summary.get("error_report"):
        lines.append(f"errors written to {summary['error_report']}")
    lines.append(f"outputs in {summary['run_dir']}")
    return "\n".join(lines)


def _plan_text(plan: dict) -> str:
    c = plan["counts"]
    model = "" if plan["model_built"] else " (the model checkpoint would be built first)"
    lines = [f"{plan['pipeline']}: {c['to_run']} case(s) to run, {c['finished']} finished{model}"]
    for p in plan["cases"]:
        if p["run"]:
            skip = f" (finished: {', '.join(p['skip'])})" if p["skip"] else ""
            lines.append(f"  {p['case_id']} [{p['modality']}] would run {', '.join(p['run'])}{skip}")
    lines += [f"  cohort {name}: {'would run' if v == 'run' else 'finished'}" for name, v in plan["cohort"].items()]
    lines.append(f"nothing was run; outputs would go to {plan['run_dir']}")
    return "\n".join(lines)


@command(app, "run")
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline file, e.g. medvl/configs/pipelines/demo-cohort.yaml.")],
    backend: Annotated[str, typer.Option("--backend", help="local (worker processes) or ray (Ray Data).")] = "local",
    workers: Annotated[Optional[int], typer.Option("--workers", help="Parallel case workers (overrides the file).")] = None,  # noqa: UP045, E501
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Cohort manifest (overrides the file).")] = None,  # noqa: UP045, E501
    name: Annotated[Optional[str], typer.Option("--name", help="Run name: outputs in <workspace>/runs/<name>.")] = None,  # noqa: UP045, E501
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, auto (overrides the file).")] = None,  # noqa: UP045, E501
    skip_errors: Annotated[bool, typer.Option("--skip-errors", help="Record failing cases in errors.json and go on.")] = False,  # noqa: E501
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say which cases and steps would run; run and write nothing.")] = False,  # noqa: E501
    workspace: WorkspaceOpt = None,
) -> Result:
    """Run every case of the manifest through the pipeline's steps; finished (case, step) pairs are skipped."""
    from medvl.pipelines import PipelineConfig, plan_pipeline, run_pipeline

    overrides = {"workers": workers, "name": name, "device": device,
                 "manifest": None if manifest is None else str(manifest.resolve())}
    config = PipelineConfig.load(pipeline, **overrides)
    if dry_run:
        plan = plan_pipeline(config, workspace)
        return Result(plan, _plan_text(plan))
    summary = run_pipeline(config, workspace, backend=backend, skip_errors=skip_errors, on_record=emit_line)
    from medvl.batch import exit_code

    return Result(summary, _text(summary), exit_code=exit_code(summary["records"]))
