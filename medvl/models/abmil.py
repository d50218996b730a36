"""``bag-abmil``: attention-based MIL (Ilse et al., 2018) directly over the items' features.

Gated attention weights the items of a bag and their features are summed (:class:`~medvl.models.bag.AttentionMIL`
without an input projection), so the tower's output has the items' own width: a bag of one item is that item, and a
linear projection on top is a linear model of it (a one-instance bag-Cox model is a Cox model). The ``bag-attention``
tower projects and activates the items first; this one does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from medvl.config import Config
from medvl.errors import InputError
from medvl.models.bag import AttentionMIL
from medvl.models.registry import register_tower
from medvl.models.tower import Tower

__all__ = ["ABMILConfig", "ABMILTower"]


@dataclass
class ABMILConfig(Config):
    """Options of the ``bag-abmil`` tower: item width, attention width, gated or plain tanh attention."""

    in_dim: int = 1024
    hidden: int = 128
    gated: bool = True


class ABMILTower(Tower):
    modality = "bag"

    def __init__(self, cfg: ABMILConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.in_dim
        self.mil = AttentionMIL(cfg.in_dim, cfg.hidden, gated=cfg.gated)

    def _unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, mask = (batch, None) if isinstance(batch, torch.Tensor) else (batch.get("features"), batch.get("mask"))
        if feats is None or feats.dim() != 3 or feats.shape[-1] != self.cfg.in_dim:
            shape = None if feats is None else list(feats.shape)
            raise InputError(None, f"bag features must be [B, N, {self.cfg.in_dim}], got {shape}")
        return feats, mask

    def encode(self, batch: Any) -> torch.Tensor:
        feats, mask = self._unpack(batch)
        return self.mil(feats, mask)[0]

    def attention(self, batch: Any) -> torch.Tensor:
        """Each item's attention weight ``[B, N]`` (heatmaps)."""
        feats, mask = self._unpack(batch)
        return self.mil(feats, mask)[1]

    def checkpoint_kwargs(self) -> dict[str, Any]:
        return self.cfg.to_dict()


def _example(tower: ABMILTower) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"features": torch.randn(2, 5, tower.cfg.in_dim, generator=g),
            "mask": torch.tensor([[True] * 5, [True] * 2 + [False] * 3])}


@register_tower("bag-abmil", "bag", example_input=_example,
                description="gated attention MIL over the items' own features (no input projection)")
def bag_abmil(**kwargs: Any) -> ABMILTower:
    return ABMILTower(ABMILConfig.from_dict(kwargs))


@register_tower("bag-abmil-tiny", "bag", tiny=True, example_input=_example,
                description="bag-abmil over 16-d items (tests)")
def bag_abmil_tiny(**kwargs: Any) -> ABMILTower:
    return ABMILTower(ABMILConfig.from_dict({"in_dim": 16, "hidden": 8, **kwargs}))
