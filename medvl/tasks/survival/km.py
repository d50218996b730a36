"""Kaplan-Meier curves by predicted-risk group with a log-rank test (lifelines)."""

from __future__ import annotations

from typing import Any

import numpy as np


def risk_groups(risk: np.ndarray, n_groups: int = 2, cutpoints: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """Assign each case to a risk group by quantiles of ``risk`` (or given cut points); 0 = lowest risk."""
    risk = np.asarray(risk, float)
    if cutpoints is None:
        cutpoints = np.quantile(risk, np.linspace(0, 1, n_groups + 1)[1:-1])
    cutpoints = np.asarray(cutpoints, float)
    groups = np.searchsorted(cutpoints, risk, side="right")
    names = (["low risk", "high risk"] if len(cutpoints) == 1
             else [f"risk group {i + 1}" for i in range(len(cutpoints) + 1)])
    return groups, names


def kaplan_meier_by_risk(time: np.ndarray, event: np.ndarray, risk: np.ndarray, n_groups: int = 2,
                         cutpoints: np.ndarray | None = None) -> dict[str, Any]:
    """Kaplan-Meier estimate per risk group and the log-rank p-value across groups.

    Args:
        time: follow-up times.
        event: True where the event was observed.
        risk: predicted risk (higher = worse); groups split at its quantiles unless ``cutpoints`` are given
            (use the training median for held-out data).
        n_groups: number of quantile groups.
        cutpoints: explicit thresholds on ``risk``.

    Returns:
        ``{"groups": [{"name", "n", "events", "median_survival", "times", "survival"}], "logrank_p": float,
        "cutpoints": [...]}``.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    time, event = np.asarray(time, float), np.asarray(event, bool)
    if cutpoints is None:
        cutpoints = np.quantile(np.asarray(risk, float), np.linspace(0, 1, n_groups + 1)[1:-1])
    groups, names = risk_groups(risk, cutpoints=cutpoints)
    out = []
    for g, name in enumerate(names):
        mask = groups == g
        if not mask.any():
            continue
        km = KaplanMeierFitter().fit(time[mask], event[mask])
        sf = km.survival_function_.iloc[:, 0]
        median = km.median_survival_time_
        out.append({"name": name, "n": int(mask.sum()), "events": int(event[mask].sum()),
                    "median_survival": None if not np.isfinite(median) else float(median),
                    "times": sf.index.to_numpy(float).tolist(), "survival": sf.to_numpy(float).tolist()})
    present = np.unique(groups)
    p = float(multivariate_logrank_test(time, groups, event).p_value) if len(present) > 1 else float("nan")
    return {"groups": out, "logrank_p": p, "cutpoints": np.asarray(cutpoints, float).tolist()}
