"""The Breslow baseline hazard of a fitted Cox model, and the survival curves it gives."""

from __future__ import annotations

import numpy as np

__all__ = ["breslow_baseline", "survival_at"]


def breslow_baseline(time: np.ndarray, event: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breslow estimate of the baseline cumulative hazard at the unique event times.

    Returns:
        ``(times, cumulative_hazard)``, both ascending; ``S(t | x) = exp(-H0(t) * exp(eta_x))``.
    """
    time, event, eta = np.asarray(time, float), np.asarray(event, bool), np.asarray(eta, float)
    shift = eta.max()
    w = np.exp(eta - shift)
    order = np.argsort(time)
    t_sorted, w_sorted, e_sorted = time[order], w[order], event[order]
    at_risk = np.cumsum(w_sorted[::-1])[::-1]
    uniq, first = np.unique(t_sorted, return_index=True)
    deaths = np.add.reduceat(e_sorted.astype(float), first)
    hazard = deaths / at_risk[first]
    keep = deaths > 0
    return uniq[keep], np.cumsum(hazard[keep]) * np.exp(-shift)


def survival_at(times: np.ndarray, base_times: np.ndarray, base_cumhaz: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Individual survival curves ``[n, len(times)]`` from a baseline cumulative hazard (step function)."""
    idx = np.searchsorted(base_times, np.asarray(times, float), side="right") - 1
    h0 = np.where(idx >= 0, base_cumhaz[np.clip(idx, 0, None)], 0.0)
    return np.exp(-np.outer(np.exp(np.asarray(eta, float)), h0))
