"""Demo step: the batch cohort pipeline (``medvl run medvl/configs/pipelines/demo-cohort.yaml``), bundled cases."""

from __future__ import annotations

from typing import Any

from medvl.demo.layout import COHORT_PIPELINE
from medvl.demo.steps import demo_step
from medvl.workspace import Workspace


@demo_step("cohort", "run the demo cohort pipeline (slide and CT cases, resumable) as `medvl run` does")
def step_cohort(ws: Workspace) -> dict[str, Any]:
    from medvl.pipelines.config import PipelineConfig
    from medvl.pipelines.run import run_pipeline
    from medvl.resources import config_dir

    # one inline worker: the demo must stay fast on 2 cores (worker processes each import torch)
    config = PipelineConfig.load(config_dir() / COHORT_PIPELINE, workers=1)
    summary = run_pipeline(config, workspace=ws.root, backend="local")
    return {
        "pipeline": summary["pipeline"],
        "run_dir": str(summary["run_dir"]),
        "cases": summary["cases"],
        "counts": summary["counts"],
        "cases_per_hour": summary["cases_per_hour"],
    }
