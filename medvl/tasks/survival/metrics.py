"""Survival metrics: Harrell's C (lifelines), Uno's IPCW C, time-dependent AUC and integrated Brier score
(scikit-survival).

``risk`` is always "higher = earlier event". Uno's C, the AUC and the Brier score weight test cases by the censoring
distribution estimated on the training outcome, so they take both ``y_train`` and ``y_test``. That distribution is
known only inside the training follow-up: test cases followed longer are administratively censored at its end (see
:func:`within_followup`), which leaves every metric on the evaluation grid unchanged.
"""

from __future__ import annotations

import numpy as np

from medvl.tasks.survival.tables import make_surv, split_surv

#: risks closer than this (relative to the largest |risk|) are one tie: rounding noise is not a ranking
TIE_TOLERANCE = 1e-9


def snap_ties(risk: np.ndarray, tolerance: float = TIE_TOLERANCE) -> np.ndarray:
    """Risks that differ only by floating-point rounding made equal.

    Patients with identical covariates must tie, but a matrix product may round their risks apart by 1e-16 (BLAS
    kernels sum in an order that depends on the row's position), and a concordance index would then count those pairs
    as concordant or discordant instead of one half.
    """
    risk = np.asarray(risk, dtype=float)
    if risk.size < 2:
        return risk.copy()
    order = np.argsort(risk, kind="stable")
    sorted_risk = risk[order]
    scale = max(float(np.abs(sorted_risk).max()), 1e-300)
    new_group = np.diff(sorted_risk) > tolerance * scale
    group = np.concatenate([[0], np.cumsum(new_group)])
    firsts = sorted_risk[np.concatenate([[0], np.flatnonzero(new_group) + 1])]
    out = np.empty_like(risk)
    out[order] = firsts[group]
    return out


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (lifelines' ``concordance_index``: ties in risk count one half, rounding-level
    differences between risks are ties, see :func:`snap_ties`)."""
    from lifelines.utils import concordance_index

    return float(concordance_index(np.asarray(time, float), -snap_ties(risk), np.asarray(event, bool)))


def evaluation_times(y_train, y_test, n: int = 10) -> np.ndarray:
    """Time grid for time-dependent metrics: quantiles of the test event times inside both follow-up ranges."""
    t_tr, _ = split_surv(y_train)
    t_te, e_te = split_surv(y_test)
    upper = min(t_tr.max(), t_te.max())
    lower = t_te.min()
    events = t_te[e_te & (t_te > lower) & (t_te < upper)]
    if len(events) < 2:
        return np.array([])
    grid = np.unique(np.quantile(events, np.linspace(0.1, 0.8, n)))
    return grid[(grid > lower) & (grid < upper)]


def uno_c(y_train, y_test, risk: np.ndarray, tau: float | None = None) -> float:
    """Uno's concordance with inverse-probability-of-censoring weights, truncated at ``tau``."""
    from sksurv.metrics import concordance_index_ipcw

    if tau is None:
        times = evaluation_times(y_train, y_test)
        tau = float(times[-1]) if len(times) else None
    return float(concordance_index_ipcw(_surv(y_train), within_followup(y_train, y_test), snap_ties(risk), tau=tau)[0])


def time_dependent_auc(y_train, y_test, risk: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at ``times`` and its mean weighted by the survival function."""
    from sksurv.metrics import cumulative_dynamic_auc

    auc, mean_auc = cumulative_dynamic_auc(_surv(y_train), within_followup(y_train, y_test), snap_ties(risk), times)
    return np.asarray(auc), float(mean_auc)


def integrated_brier(y_train, y_test, survival: np.ndarray, times: np.ndarray) -> float:
    """Integrated Brier score of survival probabilities ``survival [n_test, len(times)]``."""
    from sksurv.metrics import integrated_brier_score

    return float(integrated_brier_score(_surv(y_train), within_followup(y_train, y_test), survival, times))


def survival_metrics(y_train, y_test, risk: np.ndarray, survival_fn=None, n_times: int = 10) -> dict[str, float]:
    """All metrics in one record.

    Args:
        y_train: training outcome (censoring weights for Uno's C, AUC and Brier).
        y_test: outcome of the evaluated cases.
        risk: predicted risk of the evaluated cases.
        survival_fn: optional callable ``times -> [n_test, len(times)]`` survival probabilities (for the Brier score).
        n_times: size of the evaluation time grid.
    """
    t_te, e_te = split_surv(y_test)
    out: dict[str, float] = {"harrell_c": harrell_c(t_te, e_te, risk), "n": int(len(t_te)), "events": int(e_te.sum())}
    times = evaluation_times(y_train, y_test, n_times)
    if len(times) == 0:
        return out
    out["uno_c"] = uno_c(y_train, y_test, risk, tau=float(times[-1]))
    _, out["mean_auc"] = time_dependent_auc(y_train, y_test, risk, times)
    if survival_fn is not None and len(times) >= 2:
        out["integrated_brier"] = integrated_brier(y_train, y_test, survival_fn(times), times)
    out["tau"] = float(times[-1])
    return out


def within_followup(y_train, y_test) -> np.ndarray:
    """``y_test`` with every time past the last training time censored just inside it.

    The censoring weights come from the training outcome's Kaplan-Meier curve, which ends at its last time (and
    scikit-survival refuses later test times). Evaluation times lie inside both follow-ups (:func:`evaluation_times`),
    so a case followed longer is at risk at every one of them whether its time is the true one or the clipped one:
    Uno's C up to ``tau``, the cumulative/dynamic AUC and the Brier score at those times are unchanged by the clip.
    """
    t_tr, _ = split_surv(y_train)
    t_te, e_te = split_surv(y_test)
    last = float(t_tr.max())
    late = t_te >= last
    t_te[late], e_te[late] = np.nextafter(last, -np.inf), False
    return make_surv(t_te, e_te)


def _surv(y) -> np.ndarray:
    return make_surv(*split_surv(y))
