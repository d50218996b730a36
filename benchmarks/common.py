"""Benchmark convention: every script measures medvl and its named baseline in the same run and writes one JSON
record to ``benchmarks/results/<name>.json`` with the figures, the ratio against the baseline, and machine info.
``benchmarks/summarize.py`` turns the records into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def write_record(
    name: str,
    *,
    baseline: str,
    figures: dict[str, Any],
    ratio: float | None,
    ratio_meaning: str,
    target: str | None = None,
    passed: bool | None = None,
    notes: str | None = None,
) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically and return its path."""
    record = {
        "name": name,
        "baseline": baseline,
        "figures": figures,
        "ratio": None if ratio is None else round(float(ratio), 4),
        "ratio_meaning": ratio_meaning,
        "target": target,
        "passed": passed,
        "notes": notes,
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    print(json.dumps({"name": name, "ratio": record["ratio"], "passed": passed, "figures": figures}, default=str))
    return path
