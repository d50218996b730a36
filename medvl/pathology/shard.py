"""Feature extraction over several devices of one machine: one process per device, each with its share of slides.

:func:`shard_slides` splits a cohort into one share per device (largest files first, each to the least-loaded
share: deterministic, balanced by bytes); :func:`extract_sharded` runs :func:`~medvl.pathology.pipeline.extract_slide`
in one spawned process per device (the model loads once per process, on its device) and merges the records in the
cohort's order. Every slide is written by the same function as in one process, so the outputs are the same as on
one device; on CPU, give each process the same number of threads as the one-process run for bit-identical floats.
Across machines, ``medvl run PIPELINE --backend ray`` runs the same per-slide function on Ray actors, one GPU each.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_write_json, sweep_temporaries
from medvl.errors import ConfigError, InputError

__all__ = ["extract_sharded", "resolve_devices", "shard_slides"]


def resolve_devices(devices: str) -> list[str]:
    """``cuda:0,cuda:1`` (any comma-separated torch devices; ``cpu,cpu`` runs two CPU processes), or ``all``:
    every visible CUDA device."""
    import torch

    if devices.strip() == "all":
        if not torch.cuda.is_available():
            raise ConfigError("--devices all: no CUDA device is visible (name CPU processes as cpu,cpu)")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    names = [d.strip() for d in devices.split(",") if d.strip()]
    if not names:
        raise ConfigError("--devices names no device")
    for name in names:
        dev = torch.device(name)  # a malformed name raises here
        if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
            raise ConfigError(f"--devices: {name} is not available ({torch.cuda.device_count()} CUDA device(s))")
    return names


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def shard_slides(jobs: list, n: int) -> list[list[int]]:
    """Indices of ``jobs`` for each of ``n`` shares: largest slides first, each to the share with fewest bytes."""
    loads, shares = [0] * n, [[] for _ in range(n)]
    sizes = [_size(Path(j.path)) if Path(j.path).exists() else 0 for j in jobs]
    for i in sorted(range(len(jobs)), key=lambda i: (-sizes[i], i)):
        k = min(range(n), key=lambda s: (loads[s], s))
        shares[k].append(i)
        loads[k] += sizes[i]
    return [sorted(s) for s in shares]


def _extract_share(task: dict[str, Any]) -> list[dict[str, Any]]:
    """One process: its device, its threads, its slides (errors become records; the driver decides)."""
    os.environ["MEDVL_NO_PROGRESS"] = "1"
    import torch

    from medvl.pathology.extract import LazyTileEncoder
    from medvl.pathology.pipeline import extract_slide, run_cohort

    if task["threads"]:
        torch.set_num_threads(task["threads"])
    encoder = LazyTileEncoder(task["spec"])
    config = task["config"]
    out = task["out"]
    summary = run_cohort(task["jobs"], lambda j: extract_slide(j, out, task["tiles"], task["tissue"], encoder,
                                                              config, task["overwrite"]), skip_errors=True)
    return [{**r, "device": config.device} for r in summary["records"]]


def extract_sharded(jobs: list, out_dir: Path, tiles, tissue, spec, config, devices: list[str],
                    overwrite: bool = False, skip_errors: bool = False, threads: int | None = None,
                    on_record=None) -> dict[str, Any]:
    """Extract ``jobs`` with one process per device; returns the same summary as
    :func:`~medvl.pathology.pipeline.run_cohort` (records in the cohort's order, each with its ``device``).

    Without ``skip_errors`` the first failing slide (in cohort order) is raised after every process has finished;
    with it, failures go to ``<out>/errors.json``.
    """
    import multiprocessing
    from dataclasses import replace

    out_dir.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(out_dir)
    shares = [s for s in shard_slides(jobs, len(devices))]
    tasks = [{"jobs": [jobs[i] for i in share], "out": out_dir, "tiles": tiles, "tissue": tissue, "spec": spec,
              "config": replace(config, device=device), "overwrite": overwrite, "threads": threads}
             for share, device in zip(shares, devices, strict=True) if share]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(tasks), mp_context=context) as pool:
        results = list(pool.map(_extract_share, tasks))
    by_id = {r["slide_id"]: r for records in results for r in records}
    records = [by_id[j.slide_id] for j in jobs]
    for record in records:
        if on_record is not None:
            on_record(record)
    errors = [{"slide_id": r["slide_id"], "path": str(j.path), "error": r["error"]}
              for r, j in zip(records, jobs, strict=True) if r["status"] == "error"]
    if errors and not skip_errors:
        raise InputError(errors[0]["path"], errors[0]["error"].split(": ", 1)[-1])
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary: dict[str, Any] = {"slides": len(records), "counts": counts, "records": records, "devices": devices}
    if errors:
        summary["error_report"] = str(atomic_write_json(out_dir / "errors.json", errors))
    return summary
