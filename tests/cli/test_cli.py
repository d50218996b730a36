"""The command line as a user meets it: help, version, doctor, demo, JSON output and error lines."""

import json
import os
import textwrap

import pytest

import medvl
from medvl.cli.app import serve
from medvl.errors import InputError
from tests.conftest import run_cli


def test_help_lists_command_groups():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("doctor", "demo", "app"):
        assert name in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and medvl.__version__ in result.stdout


def test_a_group_command_builds_only_its_group_and_answers_like_the_whole_command():
    # `medvl ontology ...` imports the ontology group alone (start-up time of look-ups); the command tree it sees is
    # the same as the full one's ontology group, and an option value that names another group changes nothing
    import sys
    code = ("import sys\nfrom medvl.cli.main import main\nsys.argv = ['medvl', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('loaded:', sorted(m for m in sys.modules if m.startswith('medvl.cli.')))\n")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code, "ontology", "--help"], capture_output=True, text=True,
                         env={**os.environ, "MEDVL_NO_PROGRESS": "1"}, check=True).stdout
    loaded = out.rsplit("loaded:", 1)[1]
    assert "medvl.cli.ontology" in loaded and "medvl.cli.slide'" not in loaded and "medvl.cli.train" not in loaded
    assert "search" in out and "prompts" in out
    from medvl.cli.main import GROUPS, _group_named
    assert _group_named(["ontology", "search", "x"]) == "ontology"
    assert _group_named(["--help"]) is None and _group_named(["train", "--recipe", "ct"]) is None
    assert set(GROUPS) <= set(run_cli("--help").stdout.split())


def test_doctor_json(tmp_path):
    result = run_cli("doctor", "--json", "--workspace", tmp_path / "ws")
    assert result.returncode == 0, result.stderr
    report = result.json()
    names = {c["name"] for c in report["checks"]}
    assert {"python", "torch", "openslide library", "dicom JPEG 2000 decoder", "free disk", "workspace"} <= names
    assert report["ok"] is True and report["deep"] is False


def test_doctor_deep_names_missing_library(tmp_path):
    # A broken install: a package that fails to import shadows the real faiss. Only an import finds it (--deep).
    fake = tmp_path / "shadow" / "faiss"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libfaiss.so: cannot open shared object file')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("doctor", "--deep", "--json", "--workspace", tmp_path / "ws", env=env)
    assert result.returncode != 0
    report = result.json()
    assert report["failed"] == ["faiss"] and report["deep"] is True
    faiss = next(c for c in report["checks"] if c["name"] == "faiss")
    assert "libfaiss.so" in faiss["detail"]
    devices = next(c for c in report["checks"] if c["name"] == "devices")
    assert devices["status"] == "ok" and "cpu threads" in devices["detail"]


def test_doctor_unwritable_workspace_and_low_disk(tmp_path):
    result = run_cli("doctor", "--json", "--workspace", tmp_path / "ws", env={"MEDVL_MIN_FREE_GB": "1e9"})
    assert result.returncode != 0 and "free disk" in result.json()["failed"]
    human = run_cli("doctor", "--workspace", tmp_path / "ws", env={"MEDVL_MIN_FREE_GB": "1e9"})
    assert human.returncode == 1 and "missing or failing: free disk" in human.stdout
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        result = run_cli("doctor", "--json", "--workspace", ro / "ws")
        assert "workspace" in result.json()["failed"]


def test_demo_no_serve_builds_workspace(demo_build):
    ws, result = demo_build
    report = result.json()
    assert (ws / "slides" / "CMU-1-Small-Region.svs").is_file()
    assert (ws / "demo_report.json").is_file()
    assert "data" in report["steps"]


def test_unknown_option_is_one_clear_error():
    result = run_cli("doctor", "--bogus")
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_error_line_and_debug_traceback(tmp_path):
    # A command that fails inside the library prints one line; --debug shows the traceback.
    script = tmp_path / "cmd.py"
    script.write_text(
        textwrap.dedent(
            """
            import typer
            from medvl.cli.common import command
            from medvl.errors import InputError
            app = typer.Typer()
            @command(app, "boom")
            def boom(path: str) -> dict:
                raise InputError(path, "not a slide")
            @command(app, "other")
            def other() -> dict:
                return {"ok": True}
            @command(app, "warns")
            def warns() -> dict:
                from medvl.log import get_logger
                log = get_logger("medvl.tasks.x")
                for _ in range(3):  # met three times (a loop over cases): printed and listed once
                    log.warning("scan.dcm: 1 file(s) skipped")
                return {"ok": True, "warnings": ["from the data"]}
            app()
            """
        )
    )
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, script, "boom", "x.svs"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: x.svs: not a slide"
    proc = subprocess.run([sys.executable, script, "boom", "x.svs", "--debug"], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = subprocess.run([sys.executable, script, "other", "--json"], capture_output=True, text=True)
    assert proc.stdout.strip() == '{"ok": true, "warnings": []}'
    human = subprocess.run([sys.executable, script, "warns"], capture_output=True, text=True)
    assert human.stderr.count("warning: scan.dcm: 1 file(s) skipped") == 1
    js = subprocess.run([sys.executable, script, "warns", "--json"], capture_output=True, text=True)
    assert json.loads(js.stdout)["warnings"] == ["from the data", "scan.dcm: 1 file(s) skipped"]


def test_app_refuses_clearly_without_its_pages(tmp_path, monkeypatch):
    """A broken install (no Streamlit pages in the package) is one clear error, not a server with no pages."""
    (tmp_path / "streamlit").mkdir()
    (tmp_path / "streamlit" / "Home.py").write_text("")
    monkeypatch.setattr("medvl.resources.app_dir", lambda: tmp_path / "streamlit")
    with pytest.raises(InputError, match="Streamlit pages are missing from the installed medvl package"):
        serve(tmp_path / "ws")


def test_config_from_a_file_plus_flags_and_errors_name_flags(tmp_path):
    from medvl.cli.flags import config_from, name_flags
    from medvl.errors import ConfigError
    from medvl.pathology.settings import SlideSettings

    path = tmp_path / "s.yaml"
    path.write_text("tiles: {mpp: 1.0, size: 128}\nextract: {batch_size: 8}\n")
    cfg = config_from(SlideSettings, path, tiles={"mpp": None, "size": 256}, extract={"workers": None})
    assert (cfg.tiles.mpp, cfg.tiles.size, cfg.tiles.min_tissue) == (1.0, 256, 0.25)  # file, flag, default
    assert cfg.extract.batch_size == 8 and cfg.extract.workers == 2
    assert config_from(SlideSettings, None) == SlideSettings()
    with pytest.raises(ConfigError) as err:
        config_from(SlideSettings, None, tiles={"overlap": 500})
    assert name_flags(str(err.value)) == "--overlap must be in [0, size), got 500"
    assert name_flags("SurvivalConfig.pca_components: must be >= 1") == "--pca: must be >= 1"
    assert name_flags("Unmapped.field stays") == "Unmapped.field stays"
