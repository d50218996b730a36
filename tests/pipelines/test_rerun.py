"""Reruns answered from the run state (no torch), ``medvl run --dry-run``, staleness by content, chunked dispatch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from medvl.pipelines.dispatch import MAX_CHUNK, chunk_size
from medvl.resources import bundled
from tests.conftest import run_cli
from tests.pipelines.conftest import assert_same_outputs, run_outputs, write_cohort


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 2-case cohort (a copy of the bundled slide, the small CT) run once with 2 workers."""
    folder = tmp_path_factory.mktemp("small")
    slide = folder / f"slide{bundled('slide').suffix}"
    shutil.copy(bundled("slide"), slide)
    pipeline = write_cohort(folder, [("slide-a", "slide", slide, 10.0, 1, 60),
                                     ("ct-a", "ct", bundled("ct_small"), 8.0, 0, 70)])
    ws = folder / "ws"
    first = run_cli("run", pipeline, "--workspace", ws, "--workers", "2", "--json")
    assert first.returncode == 0, first.stderr
    return pipeline, ws, slide


def _dry(pipeline, ws, *extra):
    result = run_cli("run", pipeline, "--workspace", ws, "--dry-run", "--json", *extra)
    assert result.returncode == 0, result.stderr
    plan = result.json()
    return {c["case_id"]: c["run"] for c in plan["cases"]}, plan


def test_rerun_with_nothing_to_do_never_imports_torch(small):
    pipeline, ws, _ = small
    code = textwrap.dedent(f"""
        import json, sys
        from medvl.pipelines import PipelineConfig, run_pipeline
        s = run_pipeline(PipelineConfig.load({str(pipeline)!r}), {str(ws)!r})
        print(json.dumps({{"counts": s["counts"], "cohort": {{k: v["status"] for k, v in s["cohort"].items()}},
                          "torch": "torch" in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"MEDVL_NO_PROGRESS": "1", **__import__("os").environ})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["counts"] == {"skipped": 2}
    assert result["cohort"]["index"] == "skipped"
    assert result["torch"] is False


def test_dry_run_says_what_would_run_and_writes_nothing(small, tmp_path):
    pipeline, ws, _ = small
    runs, plan = _dry(pipeline, ws)
    assert runs == {"slide-a": [], "ct-a": []} and plan["counts"] == {"to_run": 0, "finished": 2}
    assert plan["cohort"]["index"] == "skip"
    fresh = tmp_path / "fresh"
    runs, plan = _dry(pipeline, fresh)
    assert runs == {"slide-a": ["tile", "extract", "zeroshot"], "ct-a": ["preprocess", "embed", "zeroshot"]}
    assert plan["model_built"] is False and not fresh.exists()  # a dry run writes nothing
    text = run_cli("run", pipeline, "--workspace", ws, "--dry-run", "--name", "other")
    assert text.returncode == 0 and "slide-a [slide] would run tile, extract, zeroshot" in text.stdout


def _variant(pipeline, tmp_path, edit):
    cfg = yaml.safe_load(pipeline.read_text())
    edit(cfg)
    out = tmp_path / "variant.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_changed_config_or_model_is_stale(small, tmp_path):
    pipeline, ws, _ = small
    runs, _ = _dry(_variant(pipeline, tmp_path, lambda c: c["zeroshot"].update(topk=5)), ws)
    assert runs == {"slide-a": ["zeroshot"], "ct-a": ["zeroshot"]}  # only what the setting feeds
    runs, _ = _dry(_variant(pipeline, tmp_path, lambda c: c["slide"]["tiles"].update(size=112)), ws)
    assert runs == {"slide-a": ["tile", "extract", "zeroshot"], "ct-a": []}
    runs, plan = _dry(_variant(pipeline, tmp_path, lambda c: c["model"].update(seed=1)), ws)  # other weights
    assert plan["model_built"] is False
    assert runs == {"slide-a": ["tile", "extract", "zeroshot"], "ct-a": ["preprocess", "embed", "zeroshot"]}


def test_changed_input_content_is_stale_even_with_the_same_size(small):
    pipeline, ws, slide = small
    data = bytearray(slide.read_bytes())
    original = bytes(data)
    data[-1] ^= 0xFF  # same size, other content (the stat memo sees the new mtime, the hash the new bytes)
    try:
        slide.write_bytes(bytes(data))
        runs, _ = _dry(pipeline, ws)
        assert runs["slide-a"] == ["tile", "extract", "zeroshot"] and runs["ct-a"] == []
    finally:
        slide.write_bytes(original)
    runs, _ = _dry(pipeline, ws)
    assert runs["slide-a"] == []  # the same bytes again: finished, by content


def test_inline_and_two_workers_write_the_same_outputs(small, tmp_path):
    from medvl.pipelines import PipelineConfig, run_pipeline

    pipeline, ws, _ = small
    summary = run_pipeline(PipelineConfig.load(pipeline, workers=1), tmp_path / "ws")
    assert summary["counts"] == {"done": 2}
    assert_same_outputs(run_outputs(tmp_path / "ws" / "runs" / "six"), run_outputs(ws / "runs" / "six"))


def test_chunks_shrink_towards_the_end():
    assert chunk_size(1000, 2) == MAX_CHUNK
    assert chunk_size(24, 2) == 3 and chunk_size(16, 2) == 2
    assert chunk_size(3, 2) == 1 and chunk_size(1, 4) == 1


def test_class_prompts_are_encoded_once_for_many_cases(small):
    from medvl.tasks.space import JointSpace
    from medvl.tasks.zeroshot.classifier import ZeroShotConfig
    from medvl.tasks.zeroshot.run import ClassifierCache, classify_case

    _, ws, _ = small
    run = ws / "runs" / "six"
    space = JointSpace.load(next((ws / "models").iterdir()), random_weights=True)  # the demo model is untrained
    free = {"tumour": ["carcinoma"], "normal": ["normal kidney tissue"]}
    cfg = ZeroShotConfig(templates=["pathology"])
    cache = ClassifierCache()
    h5, ct = run / "features" / "slide-a.h5", run / "ct" / "ct-a.npz"
    shared = [classify_case(p, space, None, [], free, cfg, cache=cache, modality=m) for p, m in
              ((h5, None), (ct, "volume"), (h5, None))]
    fresh = [classify_case(p, space, None, [], free, cfg, modality=m) for p, m in ((h5, None), (ct, "volume"))]
    assert len(cache._built) == 1  # one classifier (the prompts, encoded once) served all three cases
    assert shared[0]["result"] == fresh[0]["result"] == shared[2]["result"]
    assert shared[1]["result"] == fresh[1]["result"]
