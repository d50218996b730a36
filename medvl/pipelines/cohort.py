"""Cohort steps: run once in the driver over every finished case (``medvl index build``, ``medvl survival``).

Each is resumable like a per-case step: its key hashes the keys of the case steps it reads plus its own settings, and
it is skipped when ``state/_cohort/<step>.json`` holds that key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvl.io.manifest import ManifestRow
from medvl.log import get_logger
from medvl.pipelines.context import CaseContext
from medvl.pipelines.state import CaseState
from medvl.pipelines.steps import COHORT_STEPS, StepOutput
from medvl.tasks.vectors import l2_normalise

log = get_logger(__name__)

__all__ = ["run_cohort_steps"]

#: the per-case step whose output each modality contributes to cohort steps
EMBEDDING_STEP = {"slide": "extract", "ct": "embed"}


@dataclass
class CohortInput:
    """The finished cases a cohort step reads, with the key of their embedding step."""

    rows: list[ManifestRow]
    keys: dict[str, str]


def _marker_key(ctx: CaseContext, case_id: str, step: str) -> str | None:
    try:
        return json.loads((ctx.layout.state / case_id / f"{step}.json").read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


def _slide_h5(ctx: CaseContext, row: ManifestRow) -> Path:
    return ctx.layout.features / f"{row.case_id}.h5"


def index_step(ctx: CaseContext, cohort: CohortInput) -> StepOutput | None:
    """A retrieval index over the slides' joint-space embeddings (``medvl index build --model``)."""
    from medvl.tasks.retrieval.build import build_index
    from medvl.tasks.retrieval.index import IndexConfig

    slides = sorted((r for r in cohort.rows if r.modality == "slide"), key=lambda r: r.case_id)
    if not slides:
        return None
    cfg = ctx.config.index
    record = build_index([_slide_h5(ctx, r) for r in slides], ctx.layout.index, IndexConfig(kind=cfg.kind),
                         level=cfg.level, model=ctx.model_dir, random_weights=ctx.config.model.random_weights)
    files = [str(p) for p in ctx.layout.index.iterdir() if p.is_file()]
    return StepOutput({k: record[k] for k in ("count", "dim", "kind", "space", "level")}, files)


def case_vector(ctx: CaseContext, row: ManifestRow) -> np.ndarray:
    """One joint-space vector per case: mean of a slide's projected tiles, or the CT volume embedding."""
    from medvl.io.embeddings import load_embeddings

    if row.modality == "slide":
        vectors = ctx.space.to_joint(load_embeddings(_slide_h5(ctx, row)), "image")
    else:  # written projected by the checkpoint: to_joint checks it came from this model and keeps it as is
        path = ctx.layout.ct / f"{row.case_id}.npz"
        vectors = ctx.space.to_joint(load_embeddings(path), "volume", origin=path)
    v = vectors.mean(axis=0)
    return l2_normalise(v)


def survival_step(ctx: CaseContext, cohort: CohortInput) -> StepOutput | None:
    """Fit a survival model on the cases with ``time``/``event`` and predict every one of them.

    Calls ``fit_table`` and ``predict_table`` (what ``medvl survival fit|predict`` run) on a table written from the
    manifest, joined by case id with the cases' joint-space embeddings.
    """
    import pandas as pd

    from medvl.atomic import atomic_path
    from medvl.io.embeddings import EmbeddingSet, save_embeddings
    from medvl.provenance import Provenance
    from medvl.tasks.survival.run import TableSpec, fit_table, predict_table

    cfg = ctx.config.survival
    rows = [r for r in cohort.rows if r.get("time") is not None and r.get("event") is not None]
    if len(rows) < 3:
        log.warning("survival: %d case(s) with time and event; at least 3 are needed, step left out", len(rows))
        return None
    out = ctx.layout.survival
    table = pd.DataFrame({"case_id": [r.case_id for r in rows], "time": [float(r.get("time")) for r in rows],
                          "event": [int(float(r.get("event"))) for r in rows],
                          **{c: [r.get(c) for r in rows] for c in cfg.covariates}})
    table_path = out / "table.csv"
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False)
    emb_path = None
    if cfg.embeddings:
        vectors = np.stack([case_vector(ctx, r) for r in rows])
        # joint-space vectors of the run's model (slides and CT alike): recorded so the survival fit can check them
        record = Provenance(model=ctx.space.model_print("joint", projected=True))
        emb_path = save_embeddings(out / "embeddings.npz", EmbeddingSet(vectors, ids=np.array(table["case_id"]),
                                                                        provenance=record))
    spec = TableSpec(table=table_path, time="time", event="event", covariates=list(cfg.covariates),
                     embeddings=emb_path, id_column="case_id")
    fit = fit_table(spec, cfg.model, out=out / "model")
    pred = predict_table(out / "model", spec, out=out / "predictions.csv", times=list(cfg.times) or None,
                         keep_ids=True)
    record = {"n": fit["n"], "events": fit["events"], "train_harrell_c": fit["train_harrell_c"],
              "inputs": fit["inputs"], "predictions": pred["predictions"]}
    files = [str(table_path), str(out / "predictions.csv"), str(out / "model")]
    return StepOutput(record, files + ([str(emb_path)] if emb_path else []))


COHORT_STEPS.add("index", index_step)
COHORT_STEPS.add("survival", survival_step)


def _cohort_key(ctx: CaseContext, name: str, cohort: CohortInput) -> str:
    settings = getattr(ctx.config, name).to_dict()
    outcomes = {r.case_id: [r.get("time"), r.get("event"), *[r.get(c) for c in ctx.config.survival.covariates]]
                for r in cohort.rows}
    state = CaseState(ctx.layout.state / "_cohort")
    return state.key(name, ctx.spec.model_fingerprint, {"settings": settings, "outcomes": outcomes},
                     [cohort.keys[k] for k in sorted(cohort.keys)])


def run_cohort_steps(ctx: CaseContext, rows: list[ManifestRow]) -> dict[str, Any]:
    """Run the configured cohort steps over ``rows`` (the finished cases); returns ``{step: record}``."""
    keys = {}
    usable = []
    for r in rows:
        key = _marker_key(ctx, r.case_id, EMBEDDING_STEP.get(r.modality, ""))
        if key is not None:
            keys[r.case_id] = key
            usable.append(r)
    cohort = CohortInput(usable, keys)
    state = CaseState(ctx.layout.state / "_cohort")
    results: dict[str, Any] = {}
    for name in ctx.config.cohort_steps:
        key = _cohort_key(ctx, name, cohort)
        done = state.finished(name, key)
        if done is not None:
            results[name] = {"status": "skipped", **done}
            continue
        t0 = time.perf_counter()
        out = COHORT_STEPS.get(name)(ctx, cohort)
        if out is None:
            results[name] = {"status": "not_applicable"}
            continue
        state.finish(name, key, out.record, out.outputs, time.perf_counter() - t0)
        results[name] = {"status": "done", **out.record}
    return results
