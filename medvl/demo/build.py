"""``build_demo``: create the workspace, run the demo steps in order, write ``demo_report.json``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json
from medvl.demo.steps import plan
from medvl.log import collected_warnings, get_logger
from medvl.resources import BUNDLED
from medvl.workspace import Workspace

log = get_logger(__name__)

__all__ = ["build_demo"]


def build_demo(workspace: Path, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Create the demo workspace and run the demo steps; returns the report (also written to the workspace).

    Args:
        workspace: the workspace folder (created when absent).
        only: run just these steps and the steps they need (default: every step).
    """
    steps = plan(only)
    ws = Workspace(workspace).create()
    report: dict[str, Any] = {"workspace": str(ws.root), "bundled": sorted(BUNDLED), "steps": {}}
    for step in steps:
        log.info("demo step %s: %s", step.name, step.description)
        start = time.perf_counter()
        record = step.fn(ws)
        report["steps"][step.name] = {"seconds": round(time.perf_counter() - start, 2), **record}
    # what the user must know (e.g. the demo model used on slides it was not trained on), once each
    report["warnings"] = collected_warnings()
    atomic_write_json(ws.root / "demo_report.json", report)
    return report
