"""Shared fixtures: paths to bundled and shared real data, a CLI runner, a temporary workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from medvl.resources import bundled, shared_data_dir

ROOT = Path(__file__).resolve().parents[1]  # the checkout the tests run in
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

# Property tests draw the same examples on every run (a CI result does not depend on the seed); `make fuzz` sets
# MEDVL_FUZZ to draw many more from a random seed, and a failure it finds becomes an explicit @example.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("fuzz", derandomize=False, database=None, print_blob=True)
settings.load_profile("fuzz" if os.environ.get("MEDVL_FUZZ") else "repeatable")


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Streamlit's AppTest runs page scripts as ``__main__`` and leaves them there; a later test that spawns processes
    (multiprocessing's spawn re-runs ``__main__`` in the child, e.g. the DDP tests) would run a page script. Put the
    real main module, its file and ``sys.argv`` back after every test."""
    main, argv = sys.modules.get("__main__"), list(sys.argv)
    main_file = getattr(main, "__file__", None)
    yield
    if main is not None:
        sys.modules["__main__"] = main
        if main_file is not None:
            main.__file__ = main_file
    sys.argv[:] = argv


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test starts with no collected warnings (as each command does): a warning given once in an earlier test
    must not hide the same warning in this one."""
    from medvl.log import clear_warnings

    clear_warnings()
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (read-only real test data); tests using it skip cleanly when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared/data is not present beside the checkout")
    return path


@pytest.fixture(scope="session")
def svs_path() -> Path:
    return bundled("slide")


@pytest.fixture(scope="session")
def ct_path() -> Path:
    return bundled("ct_small")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    monkeypatch.setenv("MEDVL_WORKSPACE", str(ws))
    return ws


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        return json.loads(self.stdout)

    def json_lines(self):
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600) -> CliResult:
    """Run ``medvl`` in a subprocess, exactly as a user or a batch script would."""
    full_env = {**os.environ, "MEDVL_NO_PROGRESS": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "medvl", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return CliResult(proc)


@pytest.fixture
def cli():
    return run_cli


def assert_clean_error(result: CliResult, *needles: str) -> None:
    """A bad input gives a non-zero exit and one clear error line (no traceback) naming what is wrong."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert lines, "no error message on stderr"
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle.lower() in error_lines[0].lower(), (needle, error_lines[0])


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory):
    """The real demo, built once per test session through the CLI as a user runs it: (workspace, CliResult)."""
    ws = tmp_path_factory.mktemp("demo") / "ws"
    result = run_cli("demo", "--no-serve", "--json", "--workspace", ws, timeout=900)
    assert result.returncode == 0, result.stderr
    return ws, result


@pytest.fixture(scope="session")
def demo_workspace(demo_build) -> Path:
    return demo_build[0]
