"""``medvl doctor``: environment check."""

from typing import Annotated

import typer

from medvl.cli.common import Result, WorkspaceOpt, command

app = typer.Typer()


@command(app, "doctor")
def doctor(
    deep: Annotated[bool, typer.Option("--deep", help="Also import every package, load OpenSlide and the DICOM "
                                       "decoders, and list devices (slow: several seconds).")] = False,
    workspace: WorkspaceOpt = None,
) -> Result:
    """Check Python, libraries, OpenSlide, DICOM decoders, workspace and disk; non-zero exit if any fails.

    By default packages are found and their versions read without importing them (under a second); --deep imports
    them, which is where a broken native library shows up.
    """
    from medvl.doctor import run_checks, summarise
    from medvl.workspace import resolve_workspace

    checks = run_checks(resolve_workspace(workspace), deep=deep)
    summary = summarise(checks, deep=deep)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "--  "}
    lines = [f"{marks[c.status]}  {c.name:<24} {c.detail}" for c in checks]
    if summary["failed"]:
        lines.append(f"missing or failing: {', '.join(summary['failed'])}")
    return Result(summary, "\n".join(lines), exit_code=0 if summary["ok"] else 1)
