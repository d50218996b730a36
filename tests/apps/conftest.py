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


#: level-0 boxes (x0, y0, x1, y1) of the black fiducial squares drawn on the viewer test slide
FIDUCIALS = [(x, y, x + 48, y + 48) for y in range(232, 1400, 256) for x in range(360, 1800, 256)]


def write_fiducial_slide(path: Path, width: int = 2048, height: int = 1536) -> Path:
    """A 3-level tiled pyramidal TIFF (mpp 0.5): H&E-like tissue with black squares at :data:`FIDUCIALS`."""
    from tests.pathology.synthetic_slides import he_scene, write_pyramid_tiff

    img = he_scene(width, height, seed=5)
    for x0, y0, x1, y1 in FIDUCIALS:
        img[y0:y1, x0:x1] = 0
    return write_pyramid_tiff(path, width, height, mpp=0.5, levels=3, tile=256, image=img)


def write_slide_without_mpp(path: Path, width: int = 1200, height: int = 900) -> Path:
    """A tiled pyramidal TIFF with no resolution tags (a scanner export that lost its pixel size)."""
    import tifffile

    from tests.pathology.synthetic_slides import he_scene

    with tifffile.TiffWriter(path) as tw:
        img = he_scene(width, height, seed=6)
        for level in range(2):
            tw.write(img, tile=(256, 256), photometric="rgb", compression="zlib", subfiletype=0 if level == 0 else 1)
            img = img[::2, ::2].copy()
    return path


@pytest.fixture(scope="session")
def viewer_workspace(demo_workspace, tmp_path_factory) -> Path:
    """The demo's models and graph, with a fiducial slide (and its annotations: the fiducial squares), a slide
    without mpp, and a CT DICOM series missing slices 10, 11 and 20."""
    import json

    from medvl.resources import bundled
    from tests.radiology.dicom_series import write_ct_series

    ws = tmp_path_factory.mktemp("viewerws") / "ws"
    for sub in ("slides", "annotations", "ct"):
        (ws / sub).mkdir(parents=True)
    for sub in ("models", "graph"):
        (ws / sub).symlink_to(demo_workspace / sub, target_is_directory=True)
    write_fiducial_slide(ws / "slides" / "fiducials.tiff")
    write_slide_without_mpp(ws / "slides" / "nompp.tiff")
    boxes = [{"type": "Feature", "properties": {"classification": {"name": "fiducial", "color": [255, 230, 0]}},
              "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
             for x0, y0, x1, y1 in FIDUCIALS]
    (ws / "annotations" / "fiducials.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": boxes}))
    write_ct_series(ws / "ct" / "gap", bundled("ct_small"), drop=(10, 11, 20))
    return ws


@pytest.fixture(scope="session")
def viewer_app(viewer_workspace, tmp_path_factory):
    """A served app on the viewer workspace."""
    app = serve_app(viewer_workspace, tmp_path_factory.mktemp("viewerlogs"))
    yield app
    app.stop()
