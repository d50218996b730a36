"""Where the per-case function runs: ``local`` (worker processes on this machine) or ``ray`` (Ray actors).

Both backends start their workers once per run; each builds one :class:`CaseContext` (models loaded once) and runs
chunks of cases through a :class:`~medvl.pipelines.dispatch.CaseLoop` (the same :func:`run_case` as inline). The
driver hands the chunks out and, unless ``driver_works`` is off, runs cases itself meanwhile
(:func:`~medvl.pipelines.dispatch.drive`). Outputs do not depend on the backend: the same function, the same
checkpoint, the same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from typing import Any

from medvl.errors import ConfigError, require
from medvl.pipelines.context import CaseContext, RunSpec
from medvl.pipelines.dispatch import CaseLoop, drive

__all__ = ["BACKENDS", "LocalBackend", "RayBackend", "RayCaseWorker", "get_backend"]


def _quiet_worker() -> None:
    from medvl.log import silence_logging

    os.environ["MEDVL_NO_PROGRESS"] = "1"  # per-slide bars from many workers would garble the driver's bar
    silence_logging()  # a case's warnings travel in its record; the driver prints and lists them once


def _pool_size(spec: RunSpec, workers: int, cases: int) -> int:
    """Worker processes/actors to start: the driver counts as one worker when it runs cases itself."""
    driver = 1 if spec.pipeline().driver_works else 0
    return max(0, min(workers, cases) - driver)


class LocalBackend:
    """Worker processes on this machine (``spawn``), started once per run; ``workers <= 1`` runs inline."""

    name = "local"

    def run(self, spec: RunSpec, cases: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
        size = _pool_size(spec, workers, len(cases)) if workers > 1 else 0
        pool = _LocalPool(spec, size) if size else None
        yield from drive(spec, cases, pool, driver_works=pool is None or spec.pipeline().driver_works)


_WORKER: dict[str, CaseLoop] = {}


def _init_local_worker(spec: RunSpec) -> None:
    _quiet_worker()
    ctx = CaseContext(spec)
    ctx.warm()
    _WORKER["loop"] = CaseLoop(ctx)


def _started() -> bool:
    return "loop" in _WORKER


def _run_local_chunk(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _WORKER["loop"].run_chunk(cases)


#: environment variables sizing native thread pools in a worker process
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _LocalPool:
    """A ``spawn`` process pool whose workers build their context (and load the models) as they start."""

    def __init__(self, spec: RunSpec, size: int):
        import multiprocessing

        self.size = size
        self._exe = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_local_worker, initargs=(spec,))
        # the workers start (spawn) on these submissions, with this environment: native thread pools (OpenMP,
        # OpenBLAS, MKL) sized to the worker's share, as Ray does for its actors, not one thread per core each
        threads = str(spec.pipeline().threads_per_worker)
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        os.environ.update(dict.fromkeys(_THREAD_VARS, threads))
        try:
            self._pings = [self._exe.submit(_started) for _ in range(size)]
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def ready(self, block: bool) -> int:
        if block and not any(p.done() for p in self._pings):
            wait(self._pings, return_when=FIRST_COMPLETED)
        for p in self._pings:
            if p.done():
                p.result()  # a worker that failed to start raises here (BrokenProcessPool)
        return sum(p.done() for p in self._pings)

    def submit(self, chunk: list[dict[str, Any]]) -> Future:
        return self._exe.submit(_run_local_chunk, chunk)

    def finished(self, handles: list[Future], block: bool) -> list[tuple[Future, list[dict[str, Any]]]]:
        if block and handles:
            wait(handles, return_when=FIRST_COMPLETED)
        return [(h, h.result()) for h in handles if h.done()]

    def close(self, early: bool) -> None:
        # Either every chunk has come back (the workers are idle, or still starting when the driver did all the
        # work: no need to wait for their imports), or the driver stopped early (an error without --skip-errors:
        # queued chunks are dropped). A killed worker leaves no half-written output: writes are atomic.
        for process in list((getattr(self._exe, "_processes", None) or {}).values()):
            process.terminate()
        self._exe.shutdown(wait=True, cancel_futures=True)


class RayCaseWorker:
    """A Ray actor: builds one :class:`CaseContext` (models loaded once) and runs chunks of cases."""

    def __init__(self, spec: dict[str, Any]):
        _quiet_worker()
        ctx = CaseContext(RunSpec(**spec))
        ctx.warm()
        self.loop = CaseLoop(ctx)

    def ready(self) -> bool:
        return True

    def run_chunk(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.loop.run_chunk(cases)


class _RayPool:
    """Ray actors, each taking chunks; a chunk goes to the started actor with the fewest queued."""

    def __init__(self, ray: Any, spec: RunSpec, size: int, num_cpus: float, num_gpus: float):
        self.ray = ray
        self.size = size
        actor = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(RayCaseWorker)
        self._actors = [actor.remote(asdict(spec)) for _ in range(size)]
        self._starting = {a.ready.remote(): a for a in self._actors}
        self._load: dict[Any, int] = {}
        self._owner: dict[Any, Any] = {}

    def ready(self, block: bool) -> int:
        if self._starting:
            refs = list(self._starting)
            done, _ = self.ray.wait(refs, num_returns=1 if block and not self._load else len(refs),
                                    timeout=None if block and not self._load else 0)
            for ref in done:
                self.ray.get(ref)  # an actor that failed to start raises here
                self._load[self._starting.pop(ref)] = 0
        return len(self._load)

    def submit(self, chunk: list[dict[str, Any]]) -> Any:
        actor = min(self._load, key=self._load.__getitem__)
        ref = actor.run_chunk.remote(chunk)
        self._load[actor] += 1
        self._owner[ref] = actor
        return ref

    def finished(self, handles: list[Any], block: bool) -> list[tuple[Any, list[dict[str, Any]]]]:
        if not handles:
            return []
        done, _ = self.ray.wait(handles, num_returns=1, timeout=None if block else 0)
        if done:  # whatever else is ready too
            done, _ = self.ray.wait(handles, num_returns=len(handles), timeout=0)
        out = []
        for ref in done:
            self._load[self._owner.pop(ref)] -= 1
            out.append((ref, self.ray.get(ref)))
        return out

    def close(self, early: bool) -> None:
        for a in self._actors:
            self.ray.kill(a)


class RayBackend:
    """Ray actors over the manifest's cases, fed chunks by the driver.

    Connects to the cluster named by ``RAY_ADDRESS`` (or an already initialised session); otherwise starts a local
    Ray with ``workers`` CPUs and stops it at the end.
    """

    name = "ray"

    def run(self, spec: RunSpec, cases: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
        ray = require("ray", extra="dist", feature="the ray backend")
        started = self._connect(ray, workers)
        try:
            size = _pool_size(spec, max(1, workers), len(cases))
            cfg = spec.pipeline()
            pool = _RayPool(ray, spec, size, cfg.threads_per_worker, self._gpus(ray, spec)) if size else None
            yield from drive(spec, cases, pool, driver_works=pool is None or cfg.driver_works)
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


BACKENDS = {"local": LocalBackend, "ray": RayBackend}


def get_backend(name: str) -> Any:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]()
