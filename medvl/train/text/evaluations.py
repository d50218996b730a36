"""Trainer evaluations of text towers on real report tasks (``evaluate:`` of a stage, before and after it).

``report-classification``: IU-style report classification, frozen embeddings + linear probe, macro-AUC (the
TF-IDF baseline beside it with ``baseline: true``); ``caption-concepts``: caption -> disease concept recall@k. Both
take the options of their ``medvl eval`` sections (:mod:`medvl.tasks.report_classification`,
:mod:`medvl.tasks.caption_concepts`), without ``model``: the model being trained is measured.
"""

from __future__ import annotations

from typing import Any

from medvl.tasks.caption_concepts import CaptionConceptSection, eval_caption_concepts
from medvl.tasks.report_classification import ReportClassificationSection, eval_report_classification
from medvl.train.evaluations import register_evaluation


@register_evaluation("report-classification", ReportClassificationSection)
def report_classification(model: Any, dataset: Any, options: ReportClassificationSection) -> dict[str, Any]:
    """Macro-AUC of the model's frozen report embeddings (and of TF-IDF with ``baseline``)."""
    result = eval_report_classification(options, model=model)
    return {**result["metrics"], "labels": len(result["labels"]), "test_reports": result["test_reports"]}


@register_evaluation("caption-concepts", CaptionConceptSection)
def caption_concepts(model: Any, dataset: Any, options: CaptionConceptSection) -> dict[str, Any]:
    """Recall@k of each caption's concepts among every concept name."""
    result = eval_caption_concepts(options, model=model)
    return {**result["metrics"], "queries": result["queries"]}
