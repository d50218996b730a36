"""``medvl app``: serve the Streamlit suite over a workspace."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from medvl.cli.common import WorkspaceOpt, command, echo
from medvl.errors import InputError

app = typer.Typer()


def serve(workspace: Path, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Run ``streamlit run Home.py`` of the installed suite (``medvl/apps/streamlit``) with the workspace in the
    environment; blocks until the server stops."""
    from medvl.errors import require
    from medvl.resources import app_dir

    require("streamlit", extra="app", feature="the apps")
    home = app_dir() / "Home.py"
    if not home.is_file() or not any((home.parent / "pages").glob("*.py")):
        raise InputError(home.parent, "the Streamlit pages are missing from the installed medvl package (reinstall it)")
    env = {**os.environ, "MEDVL_WORKSPACE": str(workspace)}
    env.setdefault("MEDVL_APP_ROOTS", str(workspace))
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(home),
        "--server.headless", "true", "--server.port", str(port), "--server.address", host,
        "--browser.gatherUsageStats", "false", "--server.maxUploadSize", "200",
    ]
    echo(f"serving the medvl apps on http://{host}:{port} (workspace {workspace}); Ctrl-C stops")
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


@command(app, "app")
def app_cmd(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Port of the app server.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind (localhost by default).")] = "127.0.0.1",
) -> None:
    """Serve the Streamlit apps (slide viewer, CT viewer, zero-shot, retrieval, survival)."""
    from medvl.workspace import resolve_workspace

    code = serve(resolve_workspace(workspace), port=port, host=host)
    if code:
        raise typer.Exit(code)
