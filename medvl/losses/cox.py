"""Cox partial likelihood in torch (Breslow and Efron handling of tied event times).

``cox_nll(eta, time, event, ties)`` is the negative log partial likelihood divided by the number of events; its value
at a linear predictor equals lifelines' ``-log_likelihood_ / n_events`` for Efron ties (a test checks this). It takes
a risk score per sample with its time and event, not the paired embeddings of the contrastive registry
(:mod:`medvl.losses.registry`), so the survival heads call it directly.
"""

from __future__ import annotations

import torch

__all__ = ["cox_nll"]


def _groups(time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique times (ascending) and each sample's group index."""
    uniq, inverse = torch.unique(time, sorted=True, return_inverse=True)
    return uniq, inverse


def _risk_set_log_sum(eta: torch.Tensor, inverse: torch.Tensor, n_groups: int) -> torch.Tensor:
    """log sum_{j: t_j >= t_g} exp(eta_j) for every unique time g (ascending)."""
    group_lse = torch.full((n_groups,), float("-inf"), dtype=eta.dtype, device=eta.device)
    group_lse = group_lse.scatter_reduce(0, inverse, eta, reduce="amax", include_self=True)
    shift = group_lse.max().detach()
    group_sum = torch.zeros(n_groups, dtype=eta.dtype, device=eta.device).index_add(0, inverse, torch.exp(eta - shift))
    # reverse cumulative sum: everything at or after time g is at risk at g
    at_risk = torch.flip(torch.cumsum(torch.flip(group_sum, [0]), 0), [0])
    return torch.log(at_risk) + shift, shift


def cox_nll(eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str = "efron") -> torch.Tensor:
    """Negative log partial likelihood per event.

    Args:
        eta: linear predictor (log relative hazard), shape [N].
        time: follow-up times, shape [N].
        event: 1/True where the event happened, shape [N].
        ties: "efron" (default, as lifelines) or "breslow".
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    eta = eta.reshape(-1)
    event = event.reshape(-1).to(torch.bool)
    n_events = event.sum()
    if n_events == 0:
        return eta.sum() * 0.0
    uniq, inverse = _groups(time.reshape(-1))
    log_risk, shift = _risk_set_log_sum(eta, inverse, len(uniq))
    ev_eta, ev_group = eta[event], inverse[event]
    if ties == "breslow":
        loglik = (ev_eta - log_risk[ev_group]).sum()
        return -loglik / n_events
    # Efron: the l-th of d tied events sees the risk set minus l/d of the tied events' total hazard
    d = torch.zeros(len(uniq), dtype=eta.dtype, device=eta.device).index_add(0, ev_group, torch.ones_like(ev_eta))
    tied_sum = torch.zeros(len(uniq), dtype=eta.dtype, device=eta.device).index_add(
        0, ev_group, torch.exp(ev_eta - shift)
    )
    order = torch.argsort(ev_group, stable=True)
    sorted_groups = ev_group[order]
    first = torch.searchsorted(sorted_groups, sorted_groups, right=False)
    rank = torch.empty_like(ev_group)
    rank[order] = torch.arange(len(ev_group), device=eta.device) - first
    frac = rank.to(eta.dtype) / d[ev_group]
    denom = torch.exp(log_risk[ev_group] - shift) - frac * tied_sum[ev_group]
    loglik = (ev_eta - (torch.log(denom) + shift)).sum()
    return -loglik / n_events
