"""Evaluation reports (``medvl eval --config FILE``): JSON metrics and PNG plots in one folder.

Sections are optional and independent: ``survival`` (cross-validated Cox/deep Cox with a Kaplan-Meier plot),
``probe`` (linear probe on frozen embeddings with ROC and calibration plots), ``retrieval`` (label-matched
retrieval with a recall curve), ``zeroshot`` (zero-shot classification of labelled embeddings with a model) and
``report_classification`` (a text encoder's frozen report embeddings + a linear probe, macro-AUC, with the TF-IDF
baseline; :mod:`medvl.tasks.report_classification`) and ``caption_concepts`` (caption -> disease concept recall@k via
UMLS CUIs; :mod:`medvl.tasks.caption_concepts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medvl.config import Config, dataclass, field, save_resolved_config
from medvl.errors import ConfigError, InputError
from medvl.tasks.caption_concepts import CaptionConceptSection, eval_caption_concepts
from medvl.tasks.report_classification import ReportClassificationSection, eval_report_classification
from medvl.tasks.survival.model import SurvivalConfig


@dataclass
class SurvivalSection(Config):
    table: Path
    time: str
    event: str
    covariates: list[str] = field(default_factory=list)
    event_is_censoring: bool = False
    embeddings: Path | None = None
    model: SurvivalConfig = field(default_factory=SurvivalConfig)
    cv: int = 5
    seed: int = 0


@dataclass
class ProbeSection(Config):
    """Embeddings file with ``labels`` and ``split`` ("train"/"test") arrays."""

    embeddings: Path
    C: float = 1.0


@dataclass
class RetrievalSection(Config):
    """Query and gallery embeddings files with ``labels``; a gallery item is relevant when its label matches."""

    queries: Path
    gallery: Path
    ks: list[int] = field(default_factory=lambda: [1, 5, 10])


@dataclass
class ZeroShotSection(Config):
    """Labelled embeddings classified by a model: ``classes`` maps each label value to class names."""

    embeddings: Path
    model: str
    classes: dict[str, list[str]]
    templates: list[str] = field(default_factory=lambda: ["{}"])
    temperature: float = 0.01
    calibrate: bool = False


@dataclass
class EvalConfig(Config):
    out: Path
    survival: SurvivalSection | None = None
    probe: ProbeSection | None = None
    retrieval: RetrievalSection | None = None
    zeroshot: ZeroShotSection | None = None
    report_classification: ReportClassificationSection | None = None
    caption_concepts: CaptionConceptSection | None = None
    resolved_name = "eval_config.json"

    def validate(self) -> None:
        sections = (self.survival, self.probe, self.retrieval, self.zeroshot, self.report_classification,
                    self.caption_concepts)
        if not any(sections):
            raise ConfigError("EvalConfig: give at least one of survival, probe, retrieval, zeroshot, "
                              "report_classification, caption_concepts")


def _labelled(path: Path, need_split: bool = False):
    from medvl.io.embeddings import load_embeddings

    emb = load_embeddings(path)
    if emb.labels is None:
        raise InputError(path, "needs a 'labels' array")
    if need_split and emb.split is None:
        raise InputError(path, "needs a 'split' array (train/test)")
    return emb


def _plot(out: Path, name: str, draw) -> str:
    from medvl.tasks.plots import new_axes, save_figure

    fig, ax = new_axes()
    draw(ax)
    save_figure(fig, out / name)
    return name


def eval_survival(sec: SurvivalSection, out: Path) -> dict[str, Any]:
    from medvl.tasks.survival.run import TableSpec, evaluate_table

    spec = TableSpec(table=sec.table, time=sec.time, event=sec.event, covariates=sec.covariates,
                     event_is_censoring=sec.event_is_censoring, embeddings=sec.embeddings)
    rec = evaluate_table(spec, config=sec.model, cv=sec.cv, seed=sec.seed, report=out)
    rec["plots"] = ["kaplan_meier.png"]
    return rec


def _classification_plots(out: Path, prefix: str, y: np.ndarray, proba: np.ndarray, names: list[str]) -> list[str]:
    from medvl.tasks.plots import plot_calibration, plot_roc

    return [_plot(out, f"{prefix}_roc.png", lambda ax: plot_roc(y, proba, ax, names)),
            _plot(out, f"{prefix}_calibration.png", lambda ax: plot_calibration(y, proba, ax))]


def eval_probe(sec: ProbeSection, out: Path) -> dict[str, Any]:
    from medvl.tasks.probe import LinearProbe

    emb = _labelled(sec.embeddings, need_split=True)
    train, test = emb.split == "train", emb.split == "test"
    if not train.any() or not test.any():
        raise InputError(sec.embeddings, "split must contain both 'train' and 'test' rows")
    probe = LinearProbe(C=sec.C).fit(emb.embeddings[train], emb.labels[train])
    metrics = probe.evaluate(emb.embeddings[test], emb.labels[test])
    y = np.searchsorted(probe.classes_, emb.labels[test])
    proba = probe.predict_proba(emb.embeddings[test])
    return {"metrics": metrics, "plots": _classification_plots(out, "probe", y, proba, list(map(str, probe.classes_)))}


def eval_retrieval(sec: RetrievalSection, out: Path) -> dict[str, Any]:
    from medvl.tasks.metrics import label_relevance, recall_curve, retrieval_metrics
    from medvl.tasks.plots import plot_recall_curve
    from medvl.tasks.vectors import l2_normalise_c

    q, g = _labelled(sec.queries), _labelled(sec.gallery)
    if q.dim != g.dim:
        raise InputError(sec.queries, f"queries are {q.dim}-d but the gallery is {g.dim}-d")
    sim = l2_normalise_c(q.embeddings) @ l2_normalise_c(g.embeddings).T
    rel = label_relevance(q.labels, g.labels)
    curve = recall_curve(sim, rel)
    return {"metrics": retrieval_metrics(sim, rel, sec.ks), "recall_curve": {str(k): v for k, v in curve.items()},
            "plots": [_plot(out, "retrieval_recall.png", lambda ax: plot_recall_curve(curve, ax))]}


def eval_zeroshot(sec: ZeroShotSection, out: Path) -> dict[str, Any]:
    from medvl.tasks.metrics import classification_metrics
    from medvl.tasks.space import JointSpace
    from medvl.tasks.zeroshot.classifier import ZeroShotClassifier, ZeroShotConfig

    emb = _labelled(sec.embeddings)
    space = JointSpace.load(sec.model)
    x = space.to_joint(emb, emb.modality or "image", origin=sec.embeddings)
    cfg = ZeroShotConfig(templates=sec.templates, temperature=sec.temperature)
    clf = ZeroShotClassifier.from_names(space.model, sec.classes, cfg)
    labels = np.asarray(emb.labels).astype(str)
    unknown = sorted(set(labels) - set(sec.classes))
    if unknown:
        raise ConfigError(f"zeroshot.classes has no entry for label(s) {unknown[:3]}")
    y = np.array([list(sec.classes).index(v) for v in labels])
    if sec.calibrate:
        clf.calibrate(x, y)
    proba = clf.predict_proba(x)
    return {"metrics": classification_metrics(y, proba), "temperature": clf.temperature,
            "plots": _classification_plots(out, "zeroshot", y, proba, list(sec.classes))}


SECTIONS = {"survival": eval_survival, "probe": eval_probe, "retrieval": eval_retrieval, "zeroshot": eval_zeroshot,
            "report_classification": eval_report_classification, "caption_concepts": eval_caption_concepts}


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Run every configured section; write ``metrics.json``, the plots and the resolved config into ``config.out``."""
    from medvl.atomic import atomic_write_json

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for name, fn in SECTIONS.items():
        section = getattr(config, name)
        if section is not None:
            report[name] = fn(section, out)
    atomic_write_json(out / "metrics.json", report)
    save_resolved_config(config, out)
    return {"out": str(out), **report}
