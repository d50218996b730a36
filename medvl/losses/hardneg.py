"""Hard-negative contrastive loss (UniME): false negatives filtered out, the k hardest negatives kept, optionally
weighted by hardness.

UniME (Gu et al., 2025, "Breaking the Modality Barrier") trains universal embeddings with two changes to InfoNCE: a
candidate whose similarity to the query exceeds the positive's by more than a margin is treated as a false negative
and removed; of the remaining candidates only the ``k`` most similar are kept as hard negatives. ``beta`` adds the
hardness weighting of Robinson et al. (2021): each kept negative's term is re-weighted by ``exp(beta * sim)``
(normalised to mean 1 over the negatives), so near misses count more than easy ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_with_grad

__all__ = ["hard_negative_logits", "hard_negative_loss"]


def hard_negative_logits(sims: torch.Tensor, scale: torch.Tensor | float, margin: float | None, k: int,
                         beta: float) -> torch.Tensor:
    """Row-wise logits ``[N, N]`` with the target on the diagonal: removed candidates at ``-inf``, kept negatives
    shifted by ``log w`` (hardness weights), the positive untouched.

    Args:
        sims: cosine similarities, row i = query i against every candidate; the diagonal holds the positives.
        scale: inverse temperature.
        margin: candidates with ``sim > positive + margin`` are false negatives (``None``: keep them all).
        k: keep the ``k`` most similar remaining negatives (0: all).
        beta: hardness weighting strength (0: plain InfoNCE weights).
    """
    n = sims.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=sims.device)
    s = sims.detach()
    removed = torch.zeros_like(eye)
    if margin is not None:
        removed = (s > s.diagonal()[:, None] + margin) & ~eye
    if k and k < n - 1:
        candidates = s.masked_fill(removed | eye, float("-inf"))
        top = candidates.topk(k, dim=1).indices
        keep = torch.zeros_like(eye).scatter_(1, top, True) & ~removed
        removed = removed | (~keep & ~eye)
    logits = scale * sims
    if beta:
        negatives = ~removed & ~eye
        raw = (beta * s).masked_fill(~negatives, float("-inf"))
        # weights exp(beta s) normalised to mean 1 over each row's kept negatives; log w shifts the logit
        count = negatives.sum(1, keepdim=True).clamp_min(1)
        log_w = raw - torch.logsumexp(raw, dim=1, keepdim=True) + torch.log(count.float())
        logits = logits + log_w.masked_fill(~negatives, 0.0)
    return logits.masked_fill(removed, float("-inf"))


def hard_negative_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, *,
                       margin: float | None = 0.1, k: int = 8, beta: float = 0.0) -> torch.Tensor:
    """Symmetric UniME-style InfoNCE over the global batch (features gathered with gradient).

    Args:
        a, b: ``[B, D]`` L2-normalised embeddings of paired rows (this process's rows).
        logit_scale: inverse temperature.
        margin: false-negative margin over the positive's similarity (``None`` disables the filter).
        k: hard negatives kept per query (0 keeps every negative).
        beta: hardness weighting of the kept negatives (0: none).
    """
    all_a, all_b = all_gather_with_grad(a), all_gather_with_grad(b)
    sims = (all_a @ all_b.T).float()
    labels = torch.arange(sims.shape[0], device=sims.device)
    if isinstance(logit_scale, torch.Tensor):
        logit_scale = logit_scale.float()
    loss_ab = F.cross_entropy(hard_negative_logits(sims, logit_scale, margin, k, beta), labels)
    loss_ba = F.cross_entropy(hard_negative_logits(sims.T, logit_scale, margin, k, beta), labels)
    return (loss_ab + loss_ba) / 2

