"""The demo workspace: bundled real data run through medvl's pipelines.

``build_demo`` runs a list of named steps in order; each step takes the workspace and returns a JSON record for the
demo report (``<workspace>/demo_report.json``). Steps are idempotent, so rerunning the demo reuses earlier outputs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json
from medvl.log import get_logger
from medvl.resources import BUNDLED, bundled
from medvl.workspace import Workspace

log = get_logger(__name__)

StepFn = Callable[[Workspace], dict[str, Any]]


@dataclass(frozen=True)
class DemoStep:
    name: str
    fn: StepFn
    description: str


STEPS: list[DemoStep] = []


def demo_step(name: str, description: str) -> Callable[[StepFn], StepFn]:
    def register(fn: StepFn) -> StepFn:
        STEPS.append(DemoStep(name, fn, description))
        return fn

    return register


@demo_step("data", "copy the bundled slide, CT volumes and label map into the workspace")
def step_data(ws: Workspace) -> dict[str, Any]:
    copies = {
        "slide": ws.slides / "CMU-1-Small-Region.svs",
        "ct": ws.ct / "example_ct.nii.gz",
        "ct_small": ws.ct / "example_ct_sm.nii.gz",
        "ct_labels": ws.ct / "example_ct_sm_labels.nii.gz",
    }
    for name, dst in copies.items():
        if not dst.exists():
            shutil.copyfile(bundled(name), dst)
    return {k: str(v.relative_to(ws.root)) for k, v in copies.items()}


#: modules whose import registers their demo steps, in the order the demo runs them
STEP_MODULES = (
    "medvl.knowledge.demo",
    "medvl.pathology.demo",
    "medvl.radiology.demo",
    "medvl.train.demo",
    "medvl.tasks.demo",
    "medvl.pipelines.demo",
)


def _load_steps() -> None:
    import importlib
    import importlib.util

    for module in STEP_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def build_demo(workspace: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Create the demo workspace and run the demo steps; returns the report (also written to the workspace)."""
    _load_steps()
    ws = Workspace(workspace).create()
    report: dict[str, Any] = {"workspace": str(ws.root), "bundled": sorted(BUNDLED), "steps": {}}
    for step in STEPS:
        if only and step.name not in only:
            continue
        log.info("demo step %s: %s", step.name, step.description)
        start = time.perf_counter()
        record = step.fn(ws)
        report["steps"][step.name] = {"seconds": round(time.perf_counter() - start, 2), **record}
    atomic_write_json(ws.root / "demo_report.json", report)
    return report
