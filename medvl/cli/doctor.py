"""``medvl doctor``: environment check."""

import typer

from medvl.cli.common import Result, WorkspaceOpt, command

app = typer.Typer()


@command(app, "doctor")
def doctor(workspace: WorkspaceOpt = None) -> Result:
    """Check Python, libraries, devices, OpenSlide, DICOM decoders, workspace and disk; non-zero exit if any fails."""
    from medvl.doctor import run_checks, summarise
    from medvl.workspace import resolve_workspace

    checks = run_checks(resolve_workspace(workspace))
    summary = summarise(checks)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"{marks[c.status]}  {c.name:<24} {c.detail}" for c in checks]
    if summary["failed"]:
        lines.append(f"missing or failing: {', '.join(summary['failed'])}")
    return Result(summary, "\n".join(lines), exit_code=0 if summary["ok"] else 1)
