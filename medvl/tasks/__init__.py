"""Downstream tasks over embeddings: zero-shot diagnosis, retrieval, survival, linear probes, evaluation reports.

The core of every task works on plain arrays (numpy or torch); thin adapters take a model, the knowledge graph or a
feature file. Names are imported lazily so ``import medvl.tasks`` stays light.
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    "ZeroShotClassifier": "medvl.tasks.zeroshot",
    "ZeroShotConfig": "medvl.tasks.zeroshot",
    "PresenceClassifier": "medvl.tasks.zeroshot",
    "slide_zeroshot": "medvl.tasks.slide",
    "SlidePrediction": "medvl.tasks.slide",
    "RetrievalIndex": "medvl.tasks.retrieval",
    "retrieval_metrics": "medvl.tasks.metrics",
    "classification_metrics": "medvl.tasks.metrics",
    "SurvivalModel": "medvl.tasks.survival",
    "SurvivalConfig": "medvl.tasks.survival",
    "cross_validate_survival": "medvl.tasks.survival",
    "survival_metrics": "medvl.tasks.survival_metrics",
    "harrell_c": "medvl.tasks.survival_metrics",
    "uno_c": "medvl.tasks.survival_metrics",
    "read_survival_table": "medvl.tasks.tables",
    "SurvivalTable": "medvl.tasks.tables",
    "load_embeddings": "medvl.tasks.embeddings",
    "EmbeddingSet": "medvl.tasks.embeddings",
    "LinearProbe": "medvl.tasks.probe",
    "few_shot": "medvl.tasks.probe",
    "kaplan_meier_by_risk": "medvl.tasks.km",
    "run_eval": "medvl.tasks.report",
    "EvalConfig": "medvl.tasks.report",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
