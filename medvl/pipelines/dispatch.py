"""How cases reach workers: a worker loop with prefetch, and a driver that hands out chunks and works itself.

Workers (processes or Ray actors) start once per run and keep their :class:`CaseContext` (models loaded once) for
every chunk they get. They receive plain case dicts only; each loads the model from the checkpoint folder named in
the :class:`RunSpec` it got at start-up. Chunks shrink towards the end of the run (guided scheduling: a share of
what is left), so no worker is left with a long tail. The driver process runs cases itself from the far end of the
queue while the workers start up (it has its imports already), then alongside them.

Inside every worker a :class:`CaseLoop` runs the next case's reading steps (``prefetch`` steps: slide tiling, CT
preprocessing) in a background thread while the current case is being encoded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from medvl.log import ISOLATED_THREAD_PREFIX
from medvl.pipelines.context import CaseContext, RunSpec
from medvl.pipelines.runner import run_case
from medvl.pipelines.steps import prefetch_steps

__all__ = ["CaseLoop", "WorkerPool", "chunk_size", "drive"]

#: largest chunk handed to a worker at once
MAX_CHUNK = 8


class CaseLoop:
    """Runs cases one after another in one worker, prefetching the next case's reading steps in a thread."""

    def __init__(self, ctx: CaseContext, prefetch: bool = True):
        self.ctx = ctx
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=ISOLATED_THREAD_PREFIX) if prefetch else None
        self._ahead: dict[str, Future] = {}

    def prefetch(self, case: dict[str, Any]) -> None:
        """Start ``case``'s reading steps in the background (their outputs and markers are written as usual)."""
        only = prefetch_steps(case["modality"])
        if self._pool is None or not only or case["case_id"] in self._ahead:
            return
        self._ahead[case["case_id"]] = self._pool.submit(run_case, self.ctx, case, only)

    def run(self, case: dict[str, Any], next_case: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``case`` (after its prefetch, if one was started) while ``next_case`` is prefetched."""
        ahead = self._ahead.pop(case["case_id"], None)
        early = ahead.result() if ahead is not None else {}  # a failed prefetch leaves no marker: rerun below
        if next_case is not None:
            self.prefetch(next_case)
        record = run_case(self.ctx, case)
        if early.get("status") != "error":  # what the prefetch did and warned about belongs to this case
            done = {k: v for k, v in early.get("steps", {}).items() if v == "done"}
            record["steps"].update(done)
            if done and record.get("status") == "skipped":
                record["status"] = "done"
            warned = list(dict.fromkeys(early.get("warnings", []) + record.get("warnings", [])))
            if warned:
                record["warnings"] = warned
        return record

    def run_chunk(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.run(c, cases[i + 1] if i + 1 < len(cases) else None) for i, c in enumerate(cases)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class WorkerPool(Protocol):
    """Started workers that take chunks of cases: the local process pool or Ray actors."""

    size: int

    def ready(self, block: bool) -> int:
        """How many workers have started (waits for the first when ``block``)."""

    def submit(self, chunk: list[dict[str, Any]]) -> Any:
        """Queue ``chunk`` on a worker; returns a handle."""

    def finished(self, handles: list[Any], block: bool) -> list[tuple[Any, list[dict[str, Any]]]]:
        """``(handle, records)`` of the chunks that are done (waits for at least one when ``block``)."""

    def close(self, early: bool) -> None:
        """Stop the workers; ``early``: the driver stopped before the end, drop what has not finished."""


def chunk_size(remaining: int, workers: int) -> int:
    """Guided scheduling: a share of what is left, at most :data:`MAX_CHUNK`, at least one case."""
    return max(1, min(MAX_CHUNK, remaining // (4 * max(1, workers))))


def drive(spec: RunSpec, cases: list[dict[str, Any]], pool: WorkerPool | None, driver_works: bool
          ) -> Iterator[dict[str, Any]]:
    """Yield every case's record as it finishes, from ``pool``'s workers and (``driver_works``) the driver."""
    queue = deque(cases)
    loop = CaseLoop(CaseContext(spec)) if driver_works or pool is None else None
    inflight: list[Any] = []
    mine: dict[str, Any] | None = None  # the driver's next case, taken off the queue so no worker gets it too
    early = True
    try:
        while queue or inflight or mine is not None:
            if pool is not None:
                idle = loop is None or (not queue and mine is None)
                yield from _exchange(pool, queue, inflight, workers=pool.size + (loop is not None), idle=idle)
            if loop is not None and (queue or mine is not None):
                # alone, in manifest order; beside workers, from the far end (their chunks stay contiguous)
                take = queue.popleft if pool is None else queue.pop
                case = mine if mine is not None else take()
                mine = take() if queue else None
                yield loop.run(case, mine)
        early = False
    finally:
        if loop is not None:
            loop.close()
        if pool is not None:
            pool.close(early)


def _exchange(pool: WorkerPool, queue: deque, inflight: list[Any], workers: int, idle: bool
              ) -> Iterator[dict[str, Any]]:
    """Keep one chunk on each started worker; yield the records of finished chunks (waits when ``idle``).

    Nothing is queued on a worker still starting up, and no more than one chunk on any worker: what a slow worker
    has not taken stays in the queue, where the driver can still take it.
    """
    ready = pool.ready(block=idle and bool(queue) and not inflight)
    while queue and len(inflight) < ready:
        take = min(chunk_size(len(queue), workers), len(queue))
        inflight.append(pool.submit([queue.popleft() for _ in range(take)]))
    for handle, records in pool.finished(inflight, block=idle and bool(inflight)):
        inflight.remove(handle)
        yield from records
