"""Survival: tables (time, event, covariates, embeddings), the design matrix, Cox and deep Cox models, metrics, KM.

``tables`` reads and checks a survival table; ``design`` turns covariates into a matrix; ``model`` holds
:class:`SurvivalModel` (lifelines Cox or a deep Cox head trained on :func:`medvl.losses.cox.cox_nll`) with its
``baseline`` hazard; ``metrics`` (Harrell's and Uno's C, integrated Brier score), ``km`` (Kaplan-Meier by risk group)
and ``run`` (fit / predict / evaluate a table, as ``medvl survival`` does).
"""

from __future__ import annotations

from medvl.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("SurvivalConfig", "SurvivalModel", "cross_validate_survival"), "medvl.tasks.survival.model"),
    **dict.fromkeys(("harrell_c", "survival_metrics", "uno_c"), "medvl.tasks.survival.metrics"),
    **dict.fromkeys(("SurvivalTable", "read_survival_table"), "medvl.tasks.survival.tables"),
    "kaplan_meier_by_risk": "medvl.tasks.survival.km",
    **dict.fromkeys(("TableSpec", "evaluate_table", "fit_table", "predict_table"), "medvl.tasks.survival.run"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
