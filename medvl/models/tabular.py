"""Tabular tower: an MLP over clinical variables (age, stage, lab values, ...).

Input ``[B, F]`` floats; missing values may be NaN: they are replaced by 0 and a missing-indicator per variable is
appended, so "unknown" is distinguishable from "zero".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medvl.config import Config
from medvl.errors import InputError
from medvl.models.registry import register_tower
from medvl.models.tower import Tower

__all__ = ["TabularConfig", "TabularTower"]


@dataclass
class TabularConfig(Config):
    """Options of the tabular MLP: ``in_features`` variables, ``layers`` hidden layers of width ``hidden``."""

    in_features: int = 8
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1


class TabularTower(Tower):
    modality = "tabular"

    def __init__(self, cfg: TabularConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.hidden
        blocks: list[nn.Module] = []
        width = cfg.in_features * 2
        for _ in range(cfg.layers):
            blocks += [nn.Linear(width, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        self.mlp = nn.Sequential(*blocks)

    def encode(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor) or batch.dim() != 2 or batch.shape[1] != self.cfg.in_features:
            shape = list(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise InputError(None, f"tabular input must be a float tensor [B, {self.cfg.in_features}], got {shape}")
        x = batch.float()
        missing = torch.isnan(x)
        x = torch.cat([torch.nan_to_num(x, nan=0.0), missing.to(x.dtype)], dim=1)
        return self.mlp(x)

    def checkpoint_kwargs(self) -> dict[str, Any]:
        return self.cfg.to_dict()


def _example(tower: TabularTower) -> torch.Tensor:
    x = torch.randn(3, tower.cfg.in_features, generator=torch.Generator().manual_seed(0))
    x[1, 0] = float("nan")
    return x


@register_tower("tabular-mlp", "tabular", example_input=_example, description="MLP over clinical variables")
def tabular_mlp(**kwargs: Any) -> TabularTower:
    return TabularTower(TabularConfig.from_dict(kwargs))


@register_tower("tabular-mlp-tiny", "tabular", tiny=True, example_input=_example, description="tiny tabular MLP")
def tabular_mlp_tiny(**kwargs: Any) -> TabularTower:
    return TabularTower(TabularConfig.from_dict({"in_features": 4, "hidden": 16, "layers": 1, **kwargs}))
