"""Adaptive per-pair weights (ALIP, Yang et al., ICCV 2023): pairs whose image and caption disagree count less.

ALIP's gates weight each sample by how well its two texts agree (Language Consistency Gate: raw text against a second
caption) and each image-text pair by how well image and text agree (Description Consistency Gate). A weight is
``min(1, exp(2 (s_i - m)))`` where ``s_i`` is the (detached) cosine of the pair and ``m`` the mean similarity:
pairs above average keep weight 1, pairs below it are damped exponentially. ALIP keeps ``m`` as a running average
over steps; a loss here is a function of one batch, so ``m`` is the global batch's mean. The weighted per-row
InfoNCE terms are averaged, as in ALIP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medvl.losses.distributed import all_gather_with_grad

__all__ = ["adaptive_pair_loss", "agreement_weights"]


def agreement_weights(x: torch.Tensor, y: torch.Tensor, sharpness: float = 2.0) -> torch.Tensor:
    """``min(1, exp(sharpness * (s_i - mean(s))))`` of the detached row-wise cosines ``s_i = <x_i, y_i>``."""
    s = (x.detach().float() * y.detach().float()).sum(-1)
    return torch.exp(sharpness * (s - s.mean())).clamp(max=1.0)


def adaptive_pair_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float,
                       b2: torch.Tensor | None = None, sharpness: float = 2.0) -> torch.Tensor:
    """Symmetric InfoNCE with ALIP weights over the global batch.

    Args:
        a, b: ``[B, D]`` normalised embeddings of paired rows (image, caption).
        logit_scale: inverse temperature.
        b2: optional second caption of each row (``[B, D]``); its agreement with ``b`` gives the sample weight.
        sharpness: exponent factor (ALIP squares ``exp(s - m)``: 2).
    """
    all_a, all_b = all_gather_with_grad(a), all_gather_with_grad(b)
    weights = agreement_weights(all_a, all_b, sharpness)
    if b2 is not None:
        weights = weights * agreement_weights(all_b, all_gather_with_grad(b2), sharpness)
    logits = (logit_scale * all_a @ all_b.T).float()
    labels = torch.arange(logits.shape[0], device=logits.device)
    per_row = (F.cross_entropy(logits, labels, reduction="none")
               + F.cross_entropy(logits.T, labels, reduction="none")) / 2
    return (per_row * weights).mean()
