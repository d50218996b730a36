"""The one interface every tower implements."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from medvl.errors import ConfigError


class Tower(nn.Module):
    """An encoder of one modality.

    ``encode(batch) -> Tensor[B, D]`` gives pooled (not yet normalised) features of width ``embed_dim``;
    ``encode_tokens(batch) -> Tensor[B, T, D]`` gives token-level features where the tower has them (FILIP needs
    them). ``modality`` names the input kind ("text", "image", "volume", "bag", "tabular"). ``random_weights`` says
    whether the parameters are a random initialisation rather than loaded weights.

    Towers built from a stack of layers may also split their forward pass at layer ``n`` (``lower_modules``,
    ``encode_lower``, ``encode_upper``): the trainer then freezes the lower part and computes it once per input
    (``freeze_layers`` / ``cache_frozen`` of a stage). ``encode(x)`` equals ``encode_upper(*encode_lower(x, n), n)``.
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

    def lower_modules(self, layers: int) -> list[nn.Module]:
        """The input embedding and the lowest ``layers`` layers (what ``freeze_layers`` freezes)."""
        raise ConfigError(f"the {type(self).__name__} tower cannot split its layers (freeze_layers, cache_frozen)")

    def encode_lower(self, batch: Any, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``[B, T, D]`` of the lower modules and its mask ``[B, T]``, padded to a fixed ``T``."""
        raise ConfigError(f"the {type(self).__name__} tower cannot split its layers (freeze_layers, cache_frozen)")

    def encode_upper(self, hidden: torch.Tensor, mask: torch.Tensor, layers: int) -> torch.Tensor:
        """Pooled features ``[B, D]`` from the output of :meth:`encode_lower`: the layers above ``layers``."""
        raise ConfigError(f"the {type(self).__name__} tower cannot split its layers (freeze_layers, cache_frozen)")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory where the tower supports it (no-op otherwise)."""
