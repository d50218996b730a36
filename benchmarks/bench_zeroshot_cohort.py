"""Zero-shot over a cohort: one ``medvl zeroshot`` over 100 feature files vs a loop calling it once per file.

The feature file is the bundled slide tiled and embedded by the demo pipeline's tiny model (tile + extract), copied
under 100 names. Three figures, one run:

- ``medvl zeroshot F1 ... F100`` (one process: the model, graph and class prompts loaded/encoded once);
- a shell-style loop calling ``medvl zeroshot Fi`` per file (timed over the first 10 files: each call pays the
  interpreter, imports, model and graph again; slides/s is per file either way);
- in-process, ``classify_case`` over the 100 files with the run's classifier cache vs rebuilding the classifier
  (encoding every class prompt) per slide, which is what the pipeline did before.

Run: ``flock /tmp/medvl-heavy.lock .venv/bin/python benchmarks/bench_zeroshot_cohort.py``. Writes
``zeroshot_cohort``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MEDVL_NO_PROGRESS", "1")

import yaml  # noqa: E402

from benchmarks.common import write_record  # noqa: E402
from medvl.resources import bundled, config_dir  # noqa: E402

FILES, LOOPED = 100, 10


def _features(tmp: Path) -> tuple[Path, Path, list[str]]:
    """(feature file, model checkpoint, classes) from the demo pipeline's tile + extract on the bundled slide."""
    from medvl.pipelines import PipelineConfig, run_pipeline

    (tmp / "c.csv").write_text(f"case_id,modality,path\ns0,slide,{bundled('slide')}\n")
    cfg = yaml.safe_load((config_dir() / "pipelines" / "demo-cohort.yaml").read_text())
    cfg.update(manifest=str(tmp / "c.csv"), name="zs", workers=1, cohort_steps=[], steps={"slide": ["tile", "extract"]})
    cfg["slide"]["tiles"]["mpp"] = 0.5
    (tmp / "p.yaml").write_text(yaml.safe_dump(cfg))
    summary = run_pipeline(PipelineConfig.load(tmp / "p.yaml"), tmp / "ws")
    return Path(summary["run_dir"]) / "features" / "s0.h5", Path(summary["model"]), cfg["zeroshot"]["classes"]


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "medvl", "zeroshot", *args], check=True, capture_output=True,
                   env={**os.environ, "MEDVL_NO_PROGRESS": "1"})


def _in_process(files: list[Path], model: Path, classes: list[str], cached: bool) -> float:
    from medvl.knowledge import default_graph
    from medvl.tasks.space import JointSpace
    from medvl.tasks.zeroshot.classifier import ZeroShotConfig
    from medvl.tasks.zeroshot.run import ClassifierCache, classify_case, resolve_classes

    graph, space = default_graph(), JointSpace.load(model)
    ids, free = resolve_classes(graph, None, classes)
    cfg = ZeroShotConfig(templates=["pathology"])
    cache = ClassifierCache()
    t0 = time.perf_counter()
    for f in files:
        classify_case(f, space, graph, ids, free, cfg, cache=cache if cached else ClassifierCache())
    return len(files) / (time.perf_counter() - t0)


def main() -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        h5, model, classes = _features(tmp)
        files = []
        for i in range(FILES):
            files.append(tmp / f"slide-{i:03d}.h5")
            shutil.copy(h5, files[-1])
        common = ["--model", str(model), "--classes", ",".join(classes)]
        t0 = time.perf_counter()
        _cli(*map(str, files), *common)
        batch_rate = FILES / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for f in files[:LOOPED]:
            _cli(str(f), *common)
        loop_rate = LOOPED / (time.perf_counter() - t0)
        cached = _in_process(files, model, classes, cached=True)
        per_slide = _in_process(files, model, classes, cached=False)
    ratio = batch_rate / loop_rate
    write_record(
        "zeroshot_cohort", baseline=f"a loop calling `medvl zeroshot FILE` once per feature file ({loop_rate:.2f} "
        "slides/s)", ratio=ratio,
        ratio_meaning="slides/s of one `medvl zeroshot` over 100 files / slides/s of the per-file loop",
        figures={"files": FILES, "looped_files_timed": LOOPED, "classes": len(classes),
                 "batch_cli_slides_per_s": round(batch_rate, 2), "loop_cli_slides_per_s": round(loop_rate, 3),
                 "in_process_prompts_once_slides_per_s": round(cached, 1),
                 "in_process_prompts_per_slide_slides_per_s": round(per_slide, 1),
                 "prompts_once_over_per_slide": round(cached / per_slide, 2),
                 "load_average_start": round(load, 2), "load_average_end": round(os.getloadavg()[0], 2)},
        notes="Feature files: the bundled CMU-1 region at 0.5 µm/px through the demo pipeline's tiny model (random "
              "weights), copied; topk pooling, pathology templates, the demo's classes. The loop is timed over "
              f"its first {LOOPED} files (each call costs the same). Shared 2-core CPU machine.",
    )


if __name__ == "__main__":
    main()
