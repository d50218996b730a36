"""Cohort pipelines: a manifest of cases, declarative per-case steps, resumable runs on a local or Ray backend.

``run_pipeline(PipelineConfig.load("pipeline.yaml"), workspace, backend="local"|"ray")`` is what ``medvl run``
calls. Per-case steps (:mod:`medvl.pipelines.steps`) call the same library functions as the CLI commands; the resume
state (:mod:`medvl.pipelines.state`) skips finished (case, step) pairs.
"""

from __future__ import annotations

from medvl.pipelines.config import PipelineConfig
from medvl.pipelines.run import check_manifest, plan_pipeline, run_pipeline

__all__ = ["PipelineConfig", "check_manifest", "plan_pipeline", "run_pipeline"]
