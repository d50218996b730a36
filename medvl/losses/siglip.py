"""SigLIP: pairwise sigmoid loss with a learnable bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_with_grad, rank

__all__ = ["siglip_loss"]


def siglip_loss(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """``-1/B * sum_ij log sigmoid(z_ij * (t * a_i . b_j + bias))``, z = +1 on pairs, -1 elsewhere.

    This process's rows of ``a`` meet every process's ``b`` (gathered with gradient), so the mean over processes is
    the loss of the global batch.
    """
    all_b = all_gather_with_grad(b)
    n = a.shape[0]
    logits = (logit_scale * a @ all_b.T + logit_bias).float()
    labels = -torch.ones_like(logits)
    idx = torch.arange(n, device=a.device)
    labels[idx, idx + rank() * n] = 1.0
    return -F.logsigmoid(labels * logits).sum() / n
