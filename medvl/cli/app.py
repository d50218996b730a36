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


def serve(workspace: Path, port: int = 8501, host: str = "127.0.0.1", tile_port: int = 0,
          tile_host: str = "127.0.0.1") -> int:
    """Run ``streamlit run Home.py`` of the installed suite (``medvl/apps/streamlit``) with the workspace in the
    environment, and the slide viewer's tile endpoint in a thread of this process; blocks until the server stops,
    then stops the endpoint.

    Streamlit runs as a child in this process group, so Ctrl-C reaches both; SIGTERM to this process is passed on
    to the child. The endpoint's URL and token secret reach Streamlit through the environment
    (:func:`medvl.apps.tileserver.endpoint_from_env`).
    """
    from medvl.apps.tileserver import TileServer, TileServerConfig
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
    tiles = TileServer(TileServerConfig(host=tile_host, port=tile_port), env=env).start()
    env.update(tiles.environment())
    echo(f"serving the medvl apps on http://{host}:{port} (workspace {workspace}; slide tiles on {tiles.url}); "
         "Ctrl-C stops")
    try:
        return _run_child(cmd, env)
    finally:
        tiles.stop()


def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run the Streamlit server until it exits; Ctrl-C and SIGTERM stop it cleanly (exit status 0)."""
    import signal

    proc = subprocess.Popen(cmd, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
        return 0 if code in (0, -signal.SIGTERM) else code
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group: Streamlit is stopping too
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@command(app, "app")
def app_cmd(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Port of the app server.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind (localhost by default).")] = "127.0.0.1",
    tile_port: Annotated[int, typer.Option(help="Port of the slide viewer's tile endpoint (0: a free one).")] = 0,
    tile_host: Annotated[str, typer.Option(help="Address of the tile endpoint (localhost by default).")] = "127.0.0.1",
) -> None:
    """Serve the Streamlit apps (slide viewer, CT viewer, zero-shot, retrieval, survival) and the slide viewer's
    tile endpoint; both stop together."""
    from medvl.workspace import resolve_workspace

    code = serve(resolve_workspace(workspace), port=port, host=host, tile_port=tile_port, tile_host=tile_host)
    if code:
        raise typer.Exit(code)
