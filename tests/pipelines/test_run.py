"""`medvl run` end to end on a 6-case cohort: local CLI, resume after SIGKILL, Ray backend parity, bad manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medvl.io.embeddings import load_embeddings
from medvl.resources import bundled
from tests.conftest import assert_clean_error, run_cli
from tests.pipelines.conftest import assert_same_outputs, run_outputs, write_cohort

CASES = ["ct-a", "slide-a", "ct-b", "slide-b", "ct-c", "ct-d"]


@pytest.fixture(scope="module")
def local_run(cohort_pipeline, tmp_path_factory):
    ws = tmp_path_factory.mktemp("local") / "ws"
    result = run_cli("run", cohort_pipeline, "--workspace", ws, "--workers", "2", "--json")
    assert result.returncode == 0, result.stderr
    return ws, result.json_lines()


def test_local_run_streams_one_line_per_case_and_writes_outputs(local_run):
    ws, lines = local_run
    *cases, summary = lines
    assert sorted(c["case_id"] for c in cases) == sorted(CASES)
    assert all(c["status"] == "done" for c in cases)
    assert summary["counts"] == {"done": 6} and summary["cases_per_hour"] > 0
    run = ws / "runs" / "six"
    for cid in CASES:
        zs = json.loads((run / "zeroshot" / f"{cid}.json").read_text())
        assert abs(sum(t["probability"] for t in zs["result"]["top"]) - 1) < 1e-3 or len(zs["result"]["top"]) < 4
        assert zs["result"]["prediction"] in {"DOID:1612", "DOID:1324", "DOID:263", "DOID:9256"}
    assert (run / "features" / "slide-a.h5").is_file()
    ct = load_embeddings(run / "ct" / "ct-d.npz")  # one file per CT case, in the layout zeroshot and index read
    assert list(ct.ids) == ["ct-d"] and ct.projected is True and ct.modality == "volume"
    assert not list((run / "ct").glob("*.joint.npz"))
    assert summary["cohort"]["index"]["count"] == 2  # the two slides
    assert summary["cohort"]["survival"]["n"] == 6
    # the same file under two case ids gives the same numbers
    out = run_outputs(run)
    assert (out["features/slide-a"] == out["features/slide-b"]).all()


def _markers(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in (run / "state").glob("*/*.json")
            if p.name != "input.json" and p.parent.name != "_cohort"}


def test_sigkill_then_rerun_redoes_nothing_finished(local_run, cohort_pipeline, tmp_path):
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "medvl", "run", str(cohort_pipeline), "--workspace", str(ws), "--workers", "1",
           "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "MEDVL_NO_PROGRESS": "1"})
    first = json.loads(proc.stdout.readline())  # the first case has finished every step
    assert first["status"] == "done"
    run = ws / "runs" / "six"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill as soon as another case has finished a step: mid-cohort
        if {Path(k).parts[1] for k in _markers(run)} - {first["case_id"]}:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _markers(run)
    finished = {Path(k).parts[1] for k in before}
    assert 0 < len(before) < 18 and first["case_id"] in finished

    result = run_cli("run", cohort_pipeline, "--workspace", ws, "--json")
    assert result.returncode == 0, result.stderr
    *cases, summary = result.json_lines()
    steps = {c["case_id"]: c["steps"] for c in cases}
    for marker, mtime in before.items():
        _, cid, name = Path(marker).parts
        assert steps[cid][Path(name).stem] == "skipped", marker
        assert (run / marker).stat().st_mtime_ns == mtime, marker  # not rewritten
    assert summary["counts"]["done"] >= 1 and summary["counts"].get("skipped", 0) >= 1
    assert summary["cohort"]["survival"]["status"] == "done"
    assert not list(run.rglob("*.tmp-medvl"))
    assert_same_outputs(run_outputs(run), run_outputs(local_run[0] / "runs" / "six"))


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_backend_matches_local(ray_session, local_run, cohort_pipeline, tmp_path):
    from medvl.pipelines import PipelineConfig, run_pipeline

    records = []
    summary = run_pipeline(PipelineConfig.load(cohort_pipeline), tmp_path / "ws", backend="ray",
                           on_record=records.append)
    assert summary["counts"] == {"done": 6} and len(records) == 6
    assert ray_session.is_initialized()  # a session it did not start is left running
    assert_same_outputs(run_outputs(tmp_path / "ws" / "runs" / "six"), run_outputs(local_run[0] / "runs" / "six"))


def test_bad_manifest_reports_every_row_before_any_work(tmp_path):
    slide = bundled("slide")
    rows = [("ok-1", "slide", slide, 1.0, 1, 50), ("ok-1", "ct", bundled("ct_small"), 2.0, 0, 51),
            ("gone", "ct", tmp_path / "missing.nii.gz", 3.0, 1, 52), ("mr-1", "mri", slide, 4.0, 0, 53),
            ("bad-event", "slide", slide, 5.0, 7, 54)]
    pipeline = write_cohort(tmp_path / "bad", rows)
    ws = tmp_path / "ws"
    result = run_cli("run", pipeline, "--workspace", ws)
    assert_clean_error(result, "4 bad row(s)", "nothing was run")
    report = json.loads((ws / "runs" / "six" / "manifest_errors.json").read_text())["problems"]
    assert len(report) == 4
    text = " ".join(report)
    assert "duplicate case_id 'ok-1'" in text and "not found" in text and "unknown modality 'mri'" in text
    assert "'event' must be 0 or 1" in text
    assert not (ws / "models").exists() or not any((ws / "models").iterdir())
    assert not (ws / "runs" / "six" / "state").exists()


def test_skip_errors_records_the_failing_case(tmp_path):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide at all")
    rows = [("slide-x", "slide", broken, 3.0, 0, 50), ("ct-a", "ct", bundled("ct_small"), 8.0, 1, 70)]
    pipeline = write_cohort(tmp_path / "c", rows)
    ws = tmp_path / "ws"
    failed = run_cli("run", pipeline, "--workspace", ws, "--workers", "1")
    assert_clean_error(failed, "slide-x", "--skip-errors")
    result = run_cli("run", pipeline, "--workspace", ws, "--workers", "1", "--skip-errors", "--json")
    assert result.returncode == 3
    *cases, summary = result.json_lines()
    status = {c["case_id"]: c["status"] for c in cases}
    assert status == {"ct-a": "done", "slide-x": "error"}
    errors = json.loads(Path(summary["error_report"]).read_text())
    assert errors[0]["case_id"] == "slide-x" and errors[0]["step"] == "tile"


def test_unknown_step_and_backend_are_config_errors(tmp_path, cohort_pipeline):
    import yaml

    cfg = yaml.safe_load(cohort_pipeline.read_text())
    cfg["steps"]["slide"] = ["extract", "tile"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert_clean_error(run_cli("run", bad, "--workspace", tmp_path / "ws"), "'extract' needs 'tile'")
    assert_clean_error(run_cli("run", cohort_pipeline, "--backend", "spark", "--workspace", tmp_path / "ws"),
                       "unknown backend 'spark'")
