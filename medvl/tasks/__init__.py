"""Downstream tasks over embeddings: zero-shot diagnosis, retrieval, survival, linear probes, evaluation reports.

``zeroshot/`` (classifiers, slide pooling, batch runs), ``survival/`` (tables, design, Cox models, metrics, KM),
``retrieval/`` (FAISS index, building from feature files); what all tasks share sits beside them: ``space`` (stored
embeddings into a model's joint space), ``vectors``, ``metrics``, ``probe``, ``plots``, ``report`` (``medvl eval``).
The core of every task works on plain arrays (numpy or torch); thin adapters take a model, the knowledge graph or a
feature file. Names are imported lazily so ``import medvl.tasks`` stays light.
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    "ZeroShotClassifier": "medvl.tasks.zeroshot.classifier",
    "ZeroShotConfig": "medvl.tasks.zeroshot.classifier",
    "PresenceClassifier": "medvl.tasks.zeroshot.classifier",
    "slide_zeroshot": "medvl.tasks.zeroshot.slide",
    "SlidePrediction": "medvl.tasks.zeroshot.slide",
    "RetrievalIndex": "medvl.tasks.retrieval.index",
    "retrieval_metrics": "medvl.tasks.metrics",
    "classification_metrics": "medvl.tasks.metrics",
    "SurvivalModel": "medvl.tasks.survival.model",
    "SurvivalConfig": "medvl.tasks.survival.model",
    "cross_validate_survival": "medvl.tasks.survival.model",
    "survival_metrics": "medvl.tasks.survival.metrics",
    "harrell_c": "medvl.tasks.survival.metrics",
    "uno_c": "medvl.tasks.survival.metrics",
    "read_survival_table": "medvl.tasks.survival.tables",
    "SurvivalTable": "medvl.tasks.survival.tables",
    "LinearProbe": "medvl.tasks.probe",
    "few_shot": "medvl.tasks.probe",
    "kaplan_meier_by_risk": "medvl.tasks.survival.km",
    "run_eval": "medvl.tasks.report",
    "EvalConfig": "medvl.tasks.report",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
