"""Multi-label cluster discrimination (MLCD, An et al., ECCV 2024) for captions that name several concepts.

MLCD assigns each sample to several cluster centres and trains with a multi-label loss that pulls a sample towards
all its positive centres and away from the rest:

    L_i = log(1 + sum_{k in P_i} exp(-(s_ik - m))) + log(1 + sum_{k in N_i} exp(s_ik))

with ``s_ik`` the scaled cosine between sample ``i`` and centre ``k``. Here the centres are the concepts a batch
names: the centre of concept ``k`` on one side is the normalised mean embedding, on the other side, of the rows whose
caption names ``k``. Images are discriminated against text centres and texts against image centres, so a caption
naming "breast cancer" and "fibroadenoma" counts both as positives instead of a single one-hot target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_no_grad, all_gather_with_grad

__all__ = ["as_multi_hot", "cluster_centres", "mlcd_loss", "multilabel_cluster_loss"]


def multilabel_cluster_loss(x: torch.Tensor, centres: torch.Tensor, positives: torch.Tensor,
                            logit_scale: torch.Tensor | float, margin: float = 0.0) -> torch.Tensor:
    """MLCD's multi-label loss of samples ``x [N, D]`` against ``centres [K, D]`` (both normalised).

    Args:
        positives: ``[N, K]`` bool, True where centre k is a positive of sample i. Rows without a positive are
            skipped.
        logit_scale: the scale ``s`` of the cosine similarities.
        margin: subtracted from the positive similarities (before scaling) to ask for a gap.
    """
    s = logit_scale * (x.float() @ centres.float().T)
    pos_logits = (-(s - logit_scale * margin)).masked_fill(~positives, float("-inf"))
    neg_logits = s.masked_fill(positives, float("-inf"))
    zero = torch.zeros(s.shape[0], 1, device=s.device, dtype=s.dtype)
    pos = torch.logsumexp(torch.cat([zero, pos_logits], dim=1), dim=1)  # log(1 + sum exp)
    neg = torch.logsumexp(torch.cat([zero, neg_logits], dim=1), dim=1)
    has = positives.any(1)
    return (pos + neg)[has].mean() if has.any() else s.sum() * 0.0


def cluster_centres(emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised mean embedding of the rows of each label present in the batch, and which labels those are.

    Args:
        emb: ``[N, D]`` embeddings.
        labels: ``[N, K]`` multi-hot labels.

    Returns:
        ``(centres [K', D], present [K])`` with ``K'`` the labels that at least one row carries.
    """
    weights = labels.float()
    present = weights.sum(0) > 0
    sums = weights[:, present].T @ emb.float()
    return F.normalize(sums, dim=-1), present


def as_multi_hot(labels: torch.Tensor) -> torch.Tensor:
    """``[N, K]`` multi-hot labels as given, or class ids ``[N]`` as one-hot."""
    if labels.dim() == 1:
        return F.one_hot(labels.long(), int(labels.max()) + 1).bool()
    return labels.bool()


def mlcd_loss(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor | float,
              margin: float = 0.0, detach_centres: bool = False) -> torch.Tensor:
    """Symmetric MLCD over the global batch: ``a`` against centres of ``b`` and ``b`` against centres of ``a``.

    Args:
        a, b: ``[B, D]`` normalised embeddings of paired rows (this process's rows).
        labels: ``[B, K]`` multi-hot concepts named by each row (or ``[B]`` class ids).
        logit_scale: scale of the cosine similarities.
        margin: positive margin.
        detach_centres: centres carry no gradient (they act as fixed targets within the step).
    """
    all_a, all_b = all_gather_with_grad(a), all_gather_with_grad(b)
    hot = as_multi_hot(all_gather_no_grad(labels.to(a.device)))
    centres_b, present = cluster_centres(all_b.detach() if detach_centres else all_b, hot)
    centres_a, _ = cluster_centres(all_a.detach() if detach_centres else all_a, hot)
    pos = hot[:, present]
    return 0.5 * (multilabel_cluster_loss(all_a, centres_b, pos, logit_scale, margin)
                  + multilabel_cluster_loss(all_b, centres_a, pos, logit_scale, margin))
