"""Where the per-case function runs: ``local`` (worker processes on this machine) or ``ray`` (Ray Data).

Both backends run :func:`medvl.pipelines.runner.run_case` with a per-worker :class:`CaseContext` built once (models
load once per process or actor) and yield each case's record as it finishes. Outputs do not depend on the backend:
the same function, the same checkpoint, the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from typing import Any

from medvl.errors import ConfigError, require
from medvl.pipelines.context import CaseContext, RunSpec
from medvl.pipelines.runner import run_case

__all__ = ["BACKENDS", "LocalBackend", "RayBackend", "RayCaseWorker", "get_backend"]


def _quiet_worker() -> None:
    from medvl.log import silence_logging

    os.environ["MEDVL_NO_PROGRESS"] = "1"  # per-slide bars from many workers would garble the driver's bar
    silence_logging()  # a case's warnings travel in its record; the driver prints and lists them once


class LocalBackend:
    """Worker processes on this machine (``spawn``: each loads the models once); ``workers <= 1`` runs inline."""

    name = "local"

    def run(self, spec: RunSpec, cases: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
        if workers <= 1 or len(cases) <= 1:
            ctx = CaseContext(spec)
            for case in cases:
                yield run_case(ctx, case)
            return
        import multiprocessing

        pool = ProcessPoolExecutor(max_workers=min(workers, len(cases)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_local_worker, initargs=(spec,))
        try:
            pending = {pool.submit(_run_local_case, case) for case in cases}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:  # the driver stopped early (an error without --skip-errors): drop what has not started
            pool.shutdown(wait=True, cancel_futures=True)


_WORKER: dict[str, CaseContext] = {}


def _init_local_worker(spec: RunSpec) -> None:
    _quiet_worker()
    _WORKER["ctx"] = CaseContext(spec)


def _run_local_case(case: dict[str, Any]) -> dict[str, Any]:
    return run_case(_WORKER["ctx"], case)


class RayCaseWorker:
    """A Ray Data actor: builds one :class:`CaseContext` (models loaded once) and runs a batch of cases."""

    def __init__(self, spec: dict[str, Any]):
        _quiet_worker()
        self.ctx = CaseContext(RunSpec(**spec))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        records = [json.dumps(run_case(self.ctx, json.loads(str(c)))) for c in batch["case"]]
        return {"record": np.array(records, dtype=object)}


class RayBackend:
    """Ray Data over the manifest: one row per case, ``map_batches`` with :class:`RayCaseWorker` actors.

    Connects to the cluster named by ``RAY_ADDRESS`` (or an already initialised session); otherwise starts a local
    Ray with ``workers`` CPUs and stops it at the end.
    """

    name = "ray"

    def run(self, spec: RunSpec, cases: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
        ray = require("ray", extra="dist", feature="the ray backend")
        started = self._connect(ray, workers)
        try:
            yield from self._iterate(ray, spec, cases, max(1, workers))
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _connect(ray: Any, workers: int) -> bool:
        if ray.is_initialized():
            return False
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(1, workers), **kwargs)
        return True

    @staticmethod
    def _gpus(ray: Any, spec: RunSpec) -> float:
        cfg = spec.pipeline()
        if cfg.gpus_per_worker is not None:
            return float(cfg.gpus_per_worker)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        return 1.0 if has_gpu and cfg.device != "cpu" else 0.0

    def _iterate(self, ray: Any, spec: RunSpec, cases: list[dict[str, Any]], workers: int
                 ) -> Iterator[dict[str, Any]]:
        from medvl.log import is_quiet

        data_ctx = ray.data.DataContext.get_current()
        data_ctx.enable_progress_bars = not is_quiet()
        data_ctx.print_on_execution_start = False
        cfg = spec.pipeline()
        ds = ray.data.from_items([{"case": json.dumps(c)} for c in cases], override_num_blocks=len(cases))
        ds = ds.map_batches(RayCaseWorker, fn_constructor_kwargs={"spec": asdict(spec)}, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cfg.threads_per_worker,
                            num_gpus=self._gpus(ray, spec))
        for row in ds.iter_rows():
            yield json.loads(str(row["record"]))


BACKENDS = {"local": LocalBackend, "ray": RayBackend}


def get_backend(name: str) -> Any:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]()
