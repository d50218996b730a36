"""Noisy-token masking by attention (GA-DMS, 2025): caption tokens the paired image does not attend to are dropped
before the caption is pooled and contrasted.

GA-DMS scores every text token by how much the image-text similarity attends to it and masks the low scorers, which
in noisy captions are filler or wrong words. The score here is the paired image's attention over the caption's
tokens, ``softmax_t(<token_t, image>)`` (monotone in the cosine, so the ranking is the cosine's); the ``mask_ratio``
fraction of each caption's real tokens with the lowest score is removed (at least one token stays), the rest are
mean-pooled and normalised, and the image and the pooled caption enter a symmetric InfoNCE. Scores are detached:
the mask is a choice, not a path for gradients. GA-DMS's second branch (predicting masked informative tokens) is not
part of this loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.contrastive import infonce_loss

__all__ = ["attention_token_mask", "token_masked_loss"]


def attention_token_mask(tokens: torch.Tensor, mask: torch.Tensor, query: torch.Tensor,
                         mask_ratio: float) -> torch.Tensor:
    """Tokens kept ``[N, T]`` (bool): each row's real tokens minus its ``mask_ratio`` least attended ones.

    Args:
        tokens: ``[N, T, D]`` normalised token embeddings.
        mask: ``[N, T]`` True = real token.
        query: ``[N, D]`` normalised embedding that attends (the paired image).
        mask_ratio: fraction of real tokens to drop (rounded down; one token always stays).
    """
    score = torch.einsum("ntd,nd->nt", tokens.detach().float(), query.detach().float())
    score = score.masked_fill(~mask, float("inf"))  # padding is never "least attended"
    n_real = mask.sum(1)
    n_drop = torch.minimum((n_real.float() * mask_ratio).floor().long(), (n_real - 1).clamp_min(0))
    order = score.argsort(dim=1, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    return mask & (rank >= n_drop[:, None])


def token_masked_loss(a: torch.Tensor, tokens_b: torch.Tensor, mask_b: torch.Tensor | None,
                      logit_scale: torch.Tensor | float, mask_ratio: float = 0.3) -> torch.Tensor:
    """Symmetric InfoNCE between ``a`` and captions pooled from their attended tokens.

    Args:
        a: ``[B, D]`` normalised embeddings (images).
        tokens_b: ``[B, T, D]`` normalised caption token embeddings in the joint space.
        mask_b: ``[B, T]`` True = real token (``None``: all real).
        logit_scale: inverse temperature.
        mask_ratio: fraction of each caption's tokens masked as noise.
    """
    if mask_b is None:
        mask_b = torch.ones(tokens_b.shape[:2], dtype=torch.bool, device=tokens_b.device)
    keep = attention_token_mask(tokens_b, mask_b.bool(), a, mask_ratio)
    w = keep.unsqueeze(-1).to(tokens_b.dtype)
    pooled = F.normalize((tokens_b * w).sum(1) / w.sum(1).clamp_min(1.0), dim=-1)
    return infonce_loss(a, pooled, logit_scale)
