"""Bank classification loss: each embedding is classified among a bank of one embedding per group.

Synonym linking retrieves a concept from a synonym among the names of *all* concepts; the in-batch contrastive loss
only sees a batch's names. This loss scores each positive text against a bank of every group's text (the concept
names, re-encoded now and then by the trainer, with the batch's own rows live) and takes the cross-entropy of its
group. Hierarchy relatives of the target (ancestors, descendants) are removed from the softmax, as in the knowledge
group loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bank_loss"]


def bank_loss(queries: torch.Tensor, bank: torch.Tensor, targets: torch.Tensor, logit_scale: float | torch.Tensor,
              relatives: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each query over the bank.

    Args:
        queries: ``[N, D]`` embeddings (normalised here).
        bank: ``[G, D]`` one embedding per group (normalised here); gradients flow into the rows that carry them.
        targets: ``[N]`` group of each query (a row of ``bank``).
        logit_scale: temperature inverse (already exponentiated).
        relatives: ``[G, G]`` bool, True for groups related in the hierarchy; a target's relatives other than
            itself are left out of its softmax.

    Returns:
        The mean cross-entropy.
    """
    logits = logit_scale * F.normalize(queries.float(), dim=-1) @ F.normalize(bank.float(), dim=-1).t()
    targets = targets.to(logits.device)
    if relatives is not None:
        removed = relatives.to(logits.device)[targets].clone()
        removed[torch.arange(len(targets), device=logits.device), targets] = False
        logits = logits.masked_fill(removed, float("-inf"))
    return F.cross_entropy(logits, targets)
