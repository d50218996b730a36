"""Symmetric InfoNCE (CLIP) with ``local_loss`` and features gathered across processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_no_grad, all_gather_with_grad, rank, world_size

__all__ = ["gather_pair", "infonce_loss"]


def gather_pair(a: torch.Tensor, b: torch.Tensor, gather_with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    gather = all_gather_with_grad if gather_with_grad else all_gather_no_grad
    return gather(a), gather(b)


def infonce_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    label_smoothing: float = 0.0,
    local_loss: bool = False,
    gather_with_grad: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b`` (both L2-normalised, local to this process).

    Args:
        a, b: ``[B, D]`` embeddings; row i of ``a`` pairs with row i of ``b``.
        logit_scale: the inverse temperature (already exponentiated).
        label_smoothing: passed to the cross-entropy.
        local_loss: compute only this process's rows against all columns (memory O(B_local * B_global)); the mean
            over processes equals the full loss.
        gather_with_grad: gather the other processes' features with gradient (exact gradients; recommended).
    """
    all_a, all_b = gather_pair(a, b, gather_with_grad)
    if local_loss:
        n = a.shape[0]
        labels = torch.arange(n, device=a.device) + rank() * n
        logits_ab = logit_scale * a @ all_b.T
        logits_ba = logit_scale * b @ all_a.T
    else:
        labels = torch.arange(all_a.shape[0], device=a.device)
        logits_ab = logit_scale * all_a @ all_b.T
        logits_ba = logits_ab.T
    loss_ab = F.cross_entropy(logits_ab.float(), labels, label_smoothing=label_smoothing)
    loss_ba = F.cross_entropy(logits_ba.float(), labels, label_smoothing=label_smoothing)
    return (loss_ab + loss_ba) / 2


def world_mean_factor() -> int:
    """Number of processes (losses computed on local rows average to the global loss)."""
    return world_size()
