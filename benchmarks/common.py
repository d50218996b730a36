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
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if os.environ.get("MEDVL_BENCH_LOCK"):  # how the run was serialised against other work on a shared machine
        info["heavy_lock"] = os.environ["MEDVL_BENCH_LOCK"]
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


class GpuUtilisation:
    """Samples GPU utilisation (``nvidia-smi``, every 100 ms) while a ``with`` block runs.

    ``summary()`` gives ``{"gpu_util_mean_pct", "gpu_util_max_pct", "samples"}``, or ``{"gpu_util": "not sampled:
    ..."}`` when ``nvidia-smi`` is missing (no GPU, or a machine without the NVIDIA tools).
    """

    def __init__(self, index: int = 0):
        self.index = index
        self._proc = None
        self._lines: list[str] = []
        self._why = ""

    def __enter__(self) -> GpuUtilisation:
        import shutil
        import subprocess

        exe = shutil.which("nvidia-smi")
        if exe is None:
            self._why = "nvidia-smi not found"
            return self
        self._proc = subprocess.Popen([exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                       f"--id={self.index}", "-lms", "100"], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=10)
        self._lines = [ln.strip() for ln in out.splitlines() if ln.strip().isdigit()]

    def summary(self) -> dict[str, Any]:
        if not self._lines:
            return {"gpu_util": f"not sampled: {self._why or 'no samples'}"}
        values = [int(v) for v in self._lines]
        return {"gpu_util_mean_pct": round(sum(values) / len(values), 1), "gpu_util_max_pct": max(values),
                "samples": len(values)}


def write_not_measured(name: str, *, baseline: str, ratio_meaning: str, why: str = "no GPU") -> Path:
    """A record saying ``name`` was not measured here (``why``); a measured record of that name is kept as it is."""
    path = RESULTS / f"{name}.json"
    try:
        if json.loads(path.read_text()).get("ratio") is not None:
            print(json.dumps({"name": name, "kept": "measured record from an earlier run", "why_not_now": why}))
            return path
    except (OSError, ValueError):
        pass
    return write_record(name, baseline=baseline, figures={"measured": False}, ratio=None,
                        ratio_meaning=ratio_meaning, notes=f"Not measured: {why} in this session. "
                        "benchmarks/gpu_all.sh runs it on a CUDA machine.")
