"""The one interface every tower implements."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class Tower(nn.Module):
    """An encoder of one modality.

    ``encode(batch) -> Tensor[B, D]`` gives pooled (not yet normalised) features of width ``embed_dim``;
    ``encode_tokens(batch) -> Tensor[B, T, D]`` gives token-level features where the tower has them (FILIP needs
    them). ``modality`` names the input kind ("text", "image", "volume", "bag", "tabular"). ``random_weights`` says
    whether the parameters are a random initialisation rather than loaded weights.
    """

    modality: ClassVar[str] = ""
    embed_dim: int
    #: True while the parameters come from no weights file (random initialisation); weight loaders set it False
    random_weights: bool = True
    #: the image transform an image tower takes when it is not the one its ``data_config`` describes (set from a
    #: checkpoint: the transform the tower was trained with); see :func:`medvl.models.transforms.tower_transform`
    transform_config: Any = None

    def encode(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no token-level output")

    def forward(self, batch: Any) -> torch.Tensor:
        return self.encode(batch)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory where the tower supports it (no-op otherwise)."""
