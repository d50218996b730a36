"""Contrastive regression with mixed pairs (SupReMix, Wu et al., 2023) for continuous targets such as survival time.

Supervised contrastive learning needs positives and negatives; for a continuous target ``y`` a sample ``j`` is a
positive of anchor ``i`` when ``|y_j - y_i| <= delta`` and a negative otherwise. SupReMix adds pairs made by mixing
embeddings, which respect the ordinal distance of the targets:

- a mixed positive from the two negatives that bracket the anchor most closely (``y_j < y_i < y_k``), mixed with
  ``lambda = (y_k - y_i) / (y_k - y_j)`` so that the mixed target is the anchor's own;
- mixed negatives from the anchor and each negative, ``mix * z_i + (1 - mix) * z_j``: hard negatives whose target
  lies between (still farther than ``delta``), harder the closer they are.

Each positive is contrasted with every (real and mixed) negative of its anchor, SupCon style::

    L_i = -1/|P_i| sum_{p in P_i} log( e^{s_ip} / (e^{s_ip} + sum_{n in N_i} e^{s_in}) ),   s = scale * cosine

Rows whose target is unknown (e.g. censored survival times) take no part (``valid``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_no_grad, all_gather_with_grad

__all__ = ["supremix_loss"]


def _bracketing(y: torch.Tensor, i: int, delta: float, valid: torch.Tensor) -> tuple[int, int] | None:
    """The closest valid samples below ``y_i - delta`` and above ``y_i + delta`` (or None)."""
    below = valid & (y < y[i] - delta)
    above = valid & (y > y[i] + delta)
    if not below.any() or not above.any():
        return None
    j = int(torch.where(below, y, torch.full_like(y, -torch.inf)).argmax())
    k = int(torch.where(above, y, torch.full_like(y, torch.inf)).argmin())
    return j, k


def _anchor_loss(z: torch.Tensor, y: torch.Tensor, i: int, valid: torch.Tensor, delta: float, mix: float,
                 scale: torch.Tensor | float) -> torch.Tensor | None:
    others = valid.clone()
    others[i] = False
    close = (y - y[i]).abs() <= delta
    pos = [z[j] for j in torch.nonzero(others & close).flatten().tolist()]
    bracket = _bracketing(y, i, delta, others)
    if bracket is not None:
        j, k = bracket
        lam = float((y[k] - y[i]) / (y[k] - y[j]))
        pos.append(F.normalize(lam * z[j] + (1 - lam) * z[k], dim=-1))
    neg_idx = torch.nonzero(others & ~close).flatten()
    if not pos or len(neg_idx) == 0:
        return None
    negs = torch.cat([z[neg_idx], F.normalize(mix * z[i] + (1 - mix) * z[neg_idx], dim=-1)])
    s_pos = scale * (torch.stack(pos) @ z[i])
    s_neg = scale * (negs @ z[i])
    denom = torch.logsumexp(torch.cat([s_pos[:, None], s_neg[None, :].expand(len(s_pos), -1)], dim=1), dim=1)
    return (denom - s_pos).mean()


def supremix_loss(z: torch.Tensor, targets: torch.Tensor, logit_scale: torch.Tensor | float,
                  valid: torch.Tensor | None = None, delta: float | None = None, mix: float = 0.5) -> torch.Tensor:
    """SupReMix loss over the global batch (see the module docstring).

    Args:
        z: ``[B, D]`` embeddings (normalised here).
        targets: ``[B]`` continuous targets (e.g. log survival time).
        logit_scale: scale of the cosine similarities (inverse temperature).
        valid: ``[B]`` bool, rows with a known target (default: all).
        delta: positives lie within ``delta`` of the anchor (default: a tenth of the valid targets' std).
        mix: weight of the anchor in a mixed negative.
    """
    z = F.normalize(all_gather_with_grad(z).float(), dim=-1)
    y = all_gather_no_grad(targets.to(z.device).float())
    valid = torch.ones_like(y, dtype=torch.bool) if valid is None else all_gather_no_grad(valid.to(z.device)).bool()
    if int(valid.sum()) < 3:
        return z.sum() * 0.0
    if delta is None:
        delta = 0.1 * float(y[valid].std())
    terms = [t for i in torch.nonzero(valid).flatten().tolist()
             if (t := _anchor_loss(z, y, i, valid, delta, mix, logit_scale)) is not None]
    return torch.stack(terms).mean() if terms else z.sum() * 0.0
