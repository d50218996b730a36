"""``medvl demo``: build the demo workspace from bundled data, then serve the apps."""

from typing import Annotated

import typer

from medvl.cli.common import Result, WorkspaceOpt, command, echo

app = typer.Typer()


@command(app, "demo")
def demo(
    workspace: WorkspaceOpt = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build the demo workspace, then exit.")] = False,
    port: Annotated[int, typer.Option(help="Port of the app server.")] = 8501,
) -> Result:
    """Build a demo workspace from the bundled real data and (unless --no-serve) serve the Streamlit apps."""
    from medvl.demo import build_demo
    from medvl.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    report = build_demo(ws)
    lines = [f"demo workspace: {ws}"]
    for name, rec in report["steps"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in _flatten(rec)))
    if no_serve:
        return Result(report, "\n".join(lines))
    echo("\n".join(lines))
    from medvl.cli.app import serve

    serve(ws, port=port, host="127.0.0.1")
    return None


def _flatten(record: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``{"zero_shot": {"auc": 0.9}}`` -> ``[("zero_shot.auc", 0.9)]`` (lists are left out of the summary line)."""
    items: list[tuple[str, object]] = []
    for key, value in record.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        elif not isinstance(value, list):
            items.append((f"{prefix}{key}", value))
    return items
