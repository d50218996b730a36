"""The one interface every tower implements."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class Tower(nn.Module):
    """An encoder of one modality.

    ``encode(batch) -> Tensor[B, D]`` gives pooled (not yet normalised) features of width ``embed_dim``;
    ``encode_tokens(batch) -> Tensor[B, T, D]`` gives token-level features where the tower has them (FILIP needs
    them). ``modality`` names the input kind ("text", "image", "volume", "bag", "tabular").
    """

    modality: ClassVar[str] = ""
    embed_dim: int

    def encode(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no token-level output")

    def forward(self, batch: Any) -> torch.Tensor:
        return self.encode(batch)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory where the tower supports it (no-op otherwise)."""
