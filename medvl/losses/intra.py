"""Intra-modal contrastive term (triple contrastive learning): two views of the same inputs must match."""

from __future__ import annotations

import torch

from medvl.losses.contrastive import infonce_loss

__all__ = ["intra_modal_loss"]


def intra_modal_loss(
    view1: torch.Tensor, view2: torch.Tensor, logit_scale: torch.Tensor | float, *, local_loss: bool = False
) -> torch.Tensor:
    """Symmetric InfoNCE between two embeddings of the same items (two augmentations, or two captions)."""
    return infonce_loss(view1, view2, logit_scale, local_loss=local_loss)
