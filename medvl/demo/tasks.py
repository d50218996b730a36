"""Demo step ``tasks``: survival on a real breast-cancer cohort, retrieval indexes over what earlier steps produced.

1. GBSG2 (German Breast Cancer Study Group 2, 686 patients, shipped inside scikit-survival) is exported to
   ``tables/gbsg2.csv``; a Cox model is fitted into ``models/survival/`` with Harrell's C and a Kaplan-Meier plot.
2. Retrieval: a tile index over the slide features in ``features/*.h5`` (``index/tiles``), and, when the ``train``
   step left its BreastMNIST model, an index of BreastMNIST image embeddings (``index/breastmnist``) with a linear
   probe on them. A part whose input is absent is skipped with a note.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medvl.demo.layout import TRAIN_MODEL
from medvl.demo.steps import demo_step
from medvl.log import get_logger
from medvl.workspace import Workspace

log = get_logger(__name__)

COVARIATES = ["age", "tsize", "pnodes", "tgrade", "horTh", "menostat", "progrec", "estrec"]


def export_gbsg2(ws: Workspace):
    """Write GBSG2 as ``tables/gbsg2.csv`` (time in days, event = recurrence-free survival event)."""
    from sksurv.datasets import load_gbsg2

    from medvl.atomic import atomic_path

    path = ws.tables / "gbsg2.csv"
    if not path.is_file():
        X, y = load_gbsg2()
        df = X.assign(time=y["time"], event=y["cens"].astype(int))
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    return path


def demo_survival(ws: Workspace) -> dict[str, Any]:
    from medvl.tasks.plots import new_axes, plot_km, save_figure
    from medvl.tasks.survival.km import kaplan_meier_by_risk
    from medvl.tasks.survival.model import SurvivalConfig
    from medvl.tasks.survival.run import TableSpec, fit_table

    table = export_gbsg2(ws)
    spec = TableSpec(table=table, time="time", event="event", covariates=COVARIATES, time_unit="days")
    out = ws.models / "survival"
    rec = fit_table(spec, SurvivalConfig(), out=out)
    data = spec.read()
    from medvl.tasks.survival.model import SurvivalModel

    model = SurvivalModel.load(out)
    km = kaplan_meier_by_risk(data.time, data.event, model.predict(data.X), cutpoints=[model.train_risk_median_])
    fig, ax = new_axes()
    plot_km(km, ax, time_unit="days")
    save_figure(fig, out / "kaplan_meier.png")
    return {"table": str(table.relative_to(ws.root)), "model": str(out.relative_to(ws.root)), "n": rec["n"],
            "events": rec["events"], "harrell_c": round(rec["train_harrell_c"], 4),
            "logrank_p": float(f"{km['logrank_p']:.3g}"),
            "km_png": str((out / "kaplan_meier.png").relative_to(ws.root))}


def demo_tile_index(ws: Workspace) -> dict[str, Any]:
    from medvl.tasks.retrieval.build import build_index

    files = sorted(ws.features.glob("*.h5")) if ws.features.is_dir() else []
    if not files:
        return {"skipped": "no slide features in features/*.h5 (the pathology step did not run)"}
    out = ws.index / "tiles"
    try:
        rec = build_index(files, out, level="tile")
    except Exception as exc:  # an h5 with coordinates only (no features yet) is not an error for the demo
        return {"skipped": f"slide features not usable: {exc}"}
    return {"index": str(out.relative_to(ws.root)), "vectors": rec["count"], "dim": rec["dim"], "kind": rec["kind"]}


def demo_breastmnist(ws: Workspace) -> dict[str, Any]:
    from medvl.models.checkpoint import is_checkpoint

    ckpt = ws.models / TRAIN_MODEL
    if not is_checkpoint(ckpt):
        return {"skipped": f"no {TRAIN_MODEL} model (the train step did not run)"}
    import pandas as pd
    import torch

    from medvl.models import create_model
    from medvl.models.identity import model_print
    from medvl.models.transforms import image_transform
    from medvl.provenance import Provenance
    from medvl.resources import bundled
    from medvl.tasks.probe import LinearProbe
    from medvl.tasks.retrieval.index import RetrievalIndex

    model = create_model(ckpt).eval()
    transform = model.image_transform()  # the checkpoint's: what the model was trained with
    emb, labels, split = [], [], []
    with np.load(bundled("breastmnist")) as data, torch.inference_mode():
        for part in ("train", "test"):
            emb.append(model.encode_image(image_transform(data[f"{part}_images"], transform)).float().numpy())
            labels.append(data[f"{part}_labels"].reshape(-1))
            split += [part] * len(labels[-1])
    X, y, split = np.concatenate(emb), np.concatenate(labels).astype(int), np.array(split)
    meta = pd.DataFrame({"label": np.where(y == 0, "malignant", "normal/benign"), "split": split})
    index = RetrievalIndex.build(X, meta, encoder=str(ckpt.resolve()), modality="image")
    record = Provenance(model=model_print(model, "image", projected=True), preprocessing=transform.to_dict())
    index.info.update(space="joint", level="image", provenance=record.to_dict())
    index.save(ws.index / "breastmnist")
    train, test = split == "train", split == "test"
    probe = LinearProbe().fit(X[train], y[train]).evaluate(X[test], y[test])
    return {"index": "index/breastmnist", "vectors": len(index), "dim": index.dim,
            "linear_probe_test": {k: round(v, 4) for k, v in probe.items() if isinstance(v, float)}}


def demo_slide_cases(ws: Workspace) -> dict[str, Any]:
    """The workspace slide as the apps show it with the demo model: its tiles encoded with the model's image tower
    and transform (kept in the workspace cache for the apps), and the warning that the model was trained on
    ultrasound, not slides (given once)."""
    from medvl.apps.catalog import scan_workspace
    from medvl.apps.slideview import slide_tiles
    from medvl.io.slide import open_slide
    from medvl.log import warn
    from medvl.models.checkpoint import is_checkpoint
    from medvl.tasks.space import JointSpace

    ckpt, cat = ws.models / TRAIN_MODEL, scan_workspace(ws.root)
    if not is_checkpoint(ckpt) or not cat.slides:
        return {"skipped": f"needs the {TRAIN_MODEL} model and a workspace slide"}
    space = JointSpace.load(ckpt)
    out: dict[str, Any] = {"slides": 0, "tiles": 0}
    for path in cat.slides:
        with open_slide(path) as slide:
            tiles = slide_tiles(slide, space, cat.features_for(path), cat.cache_dir)
        for message in tiles.warnings:
            warn(message)
        out.update(slides=out["slides"] + 1, tiles=out["tiles"] + len(tiles.embeddings), source=tiles.source)
    out["transform"] = space.model.image_transform().label()
    return out


@demo_step("tasks", "survival model on GBSG2 with a KM plot; retrieval indexes over slide tiles and BreastMNIST",
           needs=("slides", "train"))
def step_tasks(ws: Workspace) -> dict[str, Any]:
    record: dict[str, Any] = {"survival": demo_survival(ws)}
    for name, fn in (("tile_index", demo_tile_index), ("breastmnist", demo_breastmnist),
                     ("slide_cases", demo_slide_cases)):
        record[name] = fn(ws)
        if "skipped" in record[name]:
            log.info("tasks demo: %s skipped: %s", name, record[name]["skipped"])
    return record
