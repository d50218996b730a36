"""``medvl app`` starts the Streamlit server and the tile endpoint together and stops both cleanly."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from tests.apps.conftest import free_port


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"medvl app exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered")


def _closed(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return True
    return False


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_app_serves_tiles_and_stops_cleanly(stop, empty_workspace, tmp_path):
    port = free_port()
    err = tmp_path / "stderr.txt"
    env = {**os.environ, "MEDVL_NO_PROGRESS": "1"}
    env.pop("MEDVL_TILE_URL", None)
    with open(err, "w") as fh:  # its own session: the Ctrl-C below goes to its process group only
        proc = subprocess.Popen([sys.executable, "-m", "medvl", "app", "--workspace", str(empty_workspace),
                                 "--port", str(port)], stderr=fh, stdout=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/_stcore/health", proc) == 200
        tiles = re.search(r"slide tiles on (http://127\.0\.0\.1:\d+)", err.read_text()).group(1)
        assert _wait_for(f"{tiles}/health", proc) == 200
        assert _wait_for(f"{tiles}/v1/slide.dzi?path=slides/x.svs", proc) == 401  # no session token
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children and all(os.getpgid(c.pid) == os.getpgid(proc.pid) for c in children)  # one process group
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert _closed(f"{tiles}/health") and _closed(f"http://127.0.0.1:{port}/_stcore/health")
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert "Traceback" not in err.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
