"""Survival from bags end to end (``medvl survival fit --bags``): train a bag-Cox model with the trainer, then
evaluate it on held-out bags with the survival metrics of :mod:`medvl.tasks.survival`.

The model is a bag tower (``abmil``: ``bag-abmil``; ``attention``: ``bag-attention``; ``transformer``:
``bag-transformer``) whose projection to one dimension is the risk score (:mod:`medvl.train.bagsurv`). A step's Cox
loss is taken over ``batch_size`` bags (accumulation), optionally with a bank of ``memory`` recent risks and
event-balanced batches. Evaluation encodes every tile of each bag; the Breslow baseline hazard of the training risks
gives survival curves for the integrated Brier score; risk groups split at the training median (KM strata).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError, InputError

__all__ = ["BagSurvivalSpec", "bag_risks", "fit_bags"]

HEAD_TOWERS = {"abmil": "bag-abmil", "attention": "bag-attention", "transformer": "bag-transformer"}
RECORD = "bag_survival.json"


@dataclass
class BagSurvivalSpec(Config):
    """A bag-survival fit.

    Attributes:
        features: folder of ``<id>.h5`` feature files.
        table: one row per bag with the outcome (ids in ``id_column``: ``slide_id`` or ``case_id``).
        time / event / event_is_censoring: the outcome columns.
        split_column / test_split: rows whose ``split_column`` equals ``test_split`` are held out for evaluation.
        head: the bag tower: ``abmil``, ``attention`` or ``transformer``.
        hidden: the tower's width (attention width for ``abmil``).
        projection: ``linear`` (a Cox model of the bag embedding) or ``mlp``.
        batch_size: bags per Cox loss (accumulation).
        memory: recent risks kept in the bank (0: none).
        sampler: ``shuffled`` or ``event-balanced`` (``event_fraction`` of each batch are events).
        steps / lr / weight_decay: optimisation.
        max_items: tiles drawn per bag per training sample (evaluation uses all).
        one_by_one: encode a step's bags one at a time.
        ties / supremix: Cox ties; weight of the SupReMix term (0: off).
        seed / threads: the run's seed and CPU threads.
    """

    features: Path
    table: Path
    time: str
    event: str
    event_is_censoring: bool = False
    id_column: str | None = None
    split_column: str = "split"
    test_split: str | None = None
    head: Literal["abmil", "attention", "transformer"] = "abmil"
    hidden: int = 64
    projection: Literal["linear", "mlp"] = "linear"
    batch_size: int = 32
    memory: int = 0
    sampler: Literal["shuffled", "event-balanced"] = "shuffled"
    event_fraction: float = 0.5
    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_items: int | None = 512
    one_by_one: bool = False
    ties: Literal["efron", "breslow"] = "efron"
    supremix: float = 0.0
    seed: int = 0
    threads: int | None = None

    def validate(self) -> None:
        if self.batch_size < 1 or self.steps < 1 or self.lr <= 0:
            raise ConfigError("BagSurvivalSpec: batch_size and steps must be >= 1 and lr > 0")

    def dataset_options(self, part: str) -> dict[str, Any]:
        opts: dict[str, Any] = {"features": str(self.features), "table": str(self.table), "time": self.time,
                                "event": self.event, "event_is_censoring": self.event_is_censoring,
                                "id_column": self.id_column, "split_column": self.split_column,
                                "max_items": self.max_items if part == "train" else None}
        if self.test_split is not None:
            opts["exclude_split" if part == "train" else "split"] = self.test_split
        return opts


def _tower_options(spec: BagSurvivalSpec, dim: int, pos_dim: int) -> dict[str, Any]:
    if spec.head == "abmil":
        return {"in_dim": dim, "hidden": spec.hidden}
    return {"in_dim": dim, "hidden": spec.hidden, "pos_dim": pos_dim, **({"layers": 2, "heads": 4}
                                                                        if spec.head == "transformer" else {})}


def train_config(spec: BagSurvivalSpec, dim: int, pos_dim: int = 2):
    """The trainer config of a bag-survival fit."""
    from medvl.train.config import TrainConfig

    return TrainConfig.from_dict({
        "recipe": "bag-survival", "seed": spec.seed, "threads": spec.threads, "log_every": 10,
        "checkpoint_every": max(50, spec.steps // 4),
        "model_config": {"towers": {"bag": {"name": HEAD_TOWERS[spec.head], "options": _tower_options(spec, dim,
                                                                                                      pos_dim),
                                            "projection": spec.projection}}, "embed_dim": 1},
        "data": {"dataset": "bags", "options": spec.dataset_options("train"), "batch_size": spec.batch_size,
                 "sampler": spec.sampler,
                 "sampler_options": {"event_fraction": spec.event_fraction} if spec.sampler == "event-balanced"
                 else {}},
        "stages": [{"name": "cox", "objective": "bag_survival", "inputs": ["bag"], "losses": [],
                    "steps": spec.steps, "lr": spec.lr, "weight_decay": spec.weight_decay,
                    "objective_options": {"memory": spec.memory, "one_by_one": spec.one_by_one, "ties": spec.ties,
                                          "supremix": spec.supremix}}],
    })


def bag_risks(model: Any, dataset: Any) -> np.ndarray:
    """Risk of every bag of ``dataset`` (all its items), one bag at a time."""
    import torch

    from medvl.train.bagsurv import bag_risk
    from medvl.train.data import pad_bags

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(len(dataset)):
            bag = pad_bags([dataset.item(i, torch.Generator().manual_seed(i))["bag"]])
            out.append(float(bag_risk(model, bag)[0]))
    return np.asarray(out)


def _evaluate(train_ds: Any, test_ds: Any, r_train: np.ndarray, r_test: np.ndarray) -> dict[str, Any]:
    from medvl.tasks.survival.baseline import breslow_baseline, survival_at
    from medvl.tasks.survival.km import kaplan_meier_by_risk
    from medvl.tasks.survival.metrics import harrell_c, survival_metrics

    base_t, base_h = breslow_baseline(train_ds.time, train_ds.event, r_train)
    y_train = (train_ds.time, train_ds.event)
    record: dict[str, Any] = {"train_harrell_c": harrell_c(train_ds.time, train_ds.event, r_train)}
    if test_ds is not None:
        metrics = survival_metrics(y_train, (test_ds.time, test_ds.event), r_test,
                                   lambda times: survival_at(times, base_t, base_h, r_test))
        km = kaplan_meier_by_risk(test_ds.time, test_ds.event, r_test, cutpoints=np.array([np.median(r_train)]))
        record.update(test=metrics, logrank_p=km["logrank_p"],
                      risk_groups=[{k: g[k] for k in ("name", "n", "events", "median_survival")}
                                   for g in km["groups"]])
    return record


def fit_bags(spec: BagSurvivalSpec, out: str | Path) -> dict[str, Any]:
    """Train on the training bags, evaluate on the held-out ones; write ``out/model`` and ``out/bag_survival.json``."""
    from medvl.atomic import atomic_dir, atomic_write_json
    from medvl.models import create_model
    from medvl.train.data.bags import BagFolder, BagFolderOptions
    from medvl.train.engine import train

    out = Path(out)
    train_ds = BagFolder(BagFolderOptions.from_dict(spec.dataset_options("train")))
    if not train_ds.event.any():
        raise InputError(spec.table, "every training bag is censored: a Cox model needs events")
    test_ds = BagFolder(BagFolderOptions.from_dict(spec.dataset_options("test"))) if spec.test_split else None
    summary = train(train_config(spec, train_ds.dim), out / "run")
    model = create_model(out / "run" / "model")
    r_train = bag_risks(model, train_ds)
    r_test = bag_risks(model, test_ds) if test_ds is not None else np.zeros(0)
    record = {"n_train": len(train_ds), "train_events": int(train_ds.event.sum()),
              "n_test": 0 if test_ds is None else len(test_ds), "spec": spec.to_dict(),
              "train": {k: summary[k] for k in ("global_steps", "final_loss", "seconds")},
              "train_risk_median": float(np.median(r_train)), **_evaluate(train_ds, test_ds, r_train, r_test)}
    with atomic_dir(out / "model") as tmp:
        shutil.copytree(out / "run" / "model", tmp, dirs_exist_ok=True)
    atomic_write_json(out / RECORD, record)
    record["model"] = str(out / "model")
    return record


def loss_curve(run: str | Path) -> list[tuple[int, float]]:
    """``(step, loss)`` of a run's ``metrics.jsonl``."""
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [(r["global_step"], r["loss"]) for r in map(json.loads, filter(None, lines))]
