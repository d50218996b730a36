"""KEEP knowledge-group contrastive loss.

Texts (or images and texts) that belong to the same semantic group are positives; every other pair is a negative,
except pairs flagged in ``exclude_mask`` (hierarchy relatives: a disease and its ancestors or descendants), which are
left out of the denominator so the model is never pushed to separate "renal cell carcinoma" from "kidney cancer".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _as_ids(group_ids: torch.Tensor | Sequence, device: torch.device) -> torch.Tensor:
    if isinstance(group_ids, torch.Tensor):
        return group_ids.to(device)
    if len(group_ids) and isinstance(group_ids[0], str):
        _, inverse = np.unique(np.asarray(group_ids), return_inverse=True)
        return torch.as_tensor(inverse, device=device)
    return torch.as_tensor(group_ids, device=device)


def _directional(logits: torch.Tensor, positive: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -mean over positives of log softmax, with ``removed`` entries out of the softmax."""
    logits = logits.masked_fill(removed, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(~positive, 0.0)
    return -(log_prob.sum(dim=1) / positive.sum(dim=1).clamp(min=1)).mean()


def knowledge_group_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    group_ids: torch.Tensor | Sequence[int] | Sequence[str],
    exclude_mask: torch.Tensor | np.ndarray | None = None,
    logit_scale: float | torch.Tensor = 20.0,
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE over semantic groups.

    Args:
        a: ``[N, D]`` embeddings (e.g. disease names); normalised here.
        b: ``[N, D]`` embeddings paired row by row with ``a`` (synonyms, definitions, captions, or images).
        group_ids: ``[N]`` group of each row (ints or concept-id strings); rows with the same group are positives.
        exclude_mask: ``[N, N]`` bool, True for pairs removed from the negatives (hierarchy relatives, e.g. from
            :meth:`DiseaseGraph.relatives_mask`). Same-group pairs stay positives whatever the mask says.
        logit_scale: temperature inverse (a float or a learnable scalar tensor, already exponentiated).

    Returns:
        Scalar loss, the mean of the a->b and b->a directions.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must both be [N, D]; got {tuple(a.shape)} and {tuple(b.shape)}")
    ids = _as_ids(group_ids, a.device)
    if ids.shape[0] != a.shape[0]:
        raise ValueError(f"group_ids has {ids.shape[0]} entries for {a.shape[0]} rows")
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = logit_scale * a @ b.t()
    positive = ids[:, None] == ids[None, :]
    if exclude_mask is None:
        removed = torch.zeros_like(positive)
    else:
        removed = torch.as_tensor(exclude_mask, device=a.device, dtype=torch.bool) & ~positive
    return 0.5 * (_directional(logits, positive, removed) + _directional(logits.t(), positive.t(), removed.t()))
