"""Fixtures for the app tests: a demo-like workspace, a served app on localhost, a headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medvl.resources import app_dir

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = os.environ.get("MEDVL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedApp:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url, self.proc, self.log = url, proc, log

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def serve_app(workspace: Path, log_dir: Path) -> ServedApp:
    port = free_port()
    log = log_dir / f"streamlit-{port}.log"
    env = {**os.environ, "MEDVL_WORKSPACE": str(workspace), "MEDVL_APP_ROOTS": str(workspace.parent)}
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app_dir() / "Home.py"),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return ServedApp(url, proc, log)
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"streamlit did not become healthy:\n{log.read_text()}")


@pytest.fixture(scope="session")
def served_app(demo_workspace, tmp_path_factory):
    app = serve_app(demo_workspace, tmp_path_factory.mktemp("logs"))
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


PAGES = app_dir() / "pages"


def page_path(name: str) -> str:
    """Path of a page script by its name without the number prefix (``"Slide_viewer"``)."""
    matches = sorted(PAGES.glob(f"*_{name}.py"))
    assert matches, f"no page named {name} in {PAGES}"
    return str(matches[0])


@pytest.fixture
def on_workspace(monkeypatch):
    """Point the apps at a workspace (and allow its parent folder as the root)."""

    def use(ws: Path) -> Path:
        monkeypatch.setenv("MEDVL_WORKSPACE", str(ws))
        monkeypatch.setenv("MEDVL_APP_ROOTS", str(ws.parent))
        return ws

    return use


@pytest.fixture(scope="session")
def survival_workspace(demo_workspace, shared_data, tmp_path_factory) -> Path:
    """The demo workspace's folders plus a real TCGA survival table (SurvPath BRCA, read from shared/data)."""
    table = shared_data / "survival" / "survpath_tcga_brca_survival.csv"
    if not table.is_file():
        pytest.skip("the SurvPath BRCA table is not in shared/data")
    ws = tmp_path_factory.mktemp("survws") / "ws"
    ws.mkdir()
    for sub in ("models", "graph", "features", "slides", "ct", "runs"):
        if (demo_workspace / sub).exists():
            (ws / sub).symlink_to(demo_workspace / sub, target_is_directory=True)
    (ws / "tables").mkdir()
    shutil.copyfile(table, ws / "tables" / "cohort.csv")
    return ws


@pytest.fixture
def empty_workspace(tmp_path) -> Path:
    ws = tmp_path / "empty_ws"
    for sub in ("slides", "ct", "models", "features"):
        (ws / sub).mkdir(parents=True)
    return ws


@pytest.fixture(scope="session")
def survival_app(survival_workspace, tmp_path_factory):
    """A second served app, on the workspace with a survival table."""
    app = serve_app(survival_workspace, tmp_path_factory.mktemp("survlogs"))
    yield app
    app.stop()
