"""Masked-embedding autoencoding of bags (LV-MAE): mask most items of a bag, encode the rest, rebuild the masked.

A slide is a long sequence of tile embeddings; a CT volume a sequence of slice embeddings. :func:`mask_bag` hides a
high fraction of a bag's items, either at random or in square blocks of the tile grid (runs of consecutive slices for
1-D positions), so the model cannot copy a neighbour. The visible items go through the bag transformer with their
positions (:class:`~medvl.models.bag.BagTower`); :class:`MaskedBagDecoder` places the encoded visible items and a
learned mask token at every position, adds the positions, runs a small transformer and predicts the original
embedding of each masked item. The loss is the mean squared error over masked items only (each target optionally
layer-normalised, as MAE normalises pixels per patch). After training, the tower's pooled output (its class token)
is a label-free slide (or volume) embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.models.bag import FourierPositions

__all__ = ["MaskConfig", "MaskedBagDecoder", "grid_cells", "mask_bag", "masked_reconstruction_loss",
           "visible_items"]


@dataclass
class MaskConfig(Config):
    """How items are hidden.

    Attributes:
        ratio: fraction of a bag's items masked.
        mode: ``block`` (square blocks of the tile grid; runs along 1-D positions) or ``random``.
        block: block side in grid cells.
        step: grid cell size in coordinate units (``None``: the smallest non-zero gap between coordinates).
    """

    ratio: float = 0.75
    mode: Literal["block", "random"] = "block"
    block: int = 4
    step: float | None = None

    def validate(self) -> None:
        if not 0.0 < self.ratio < 1.0 or self.block < 1:
            raise ConfigError("MaskConfig: ratio must be in (0, 1) and block >= 1")


def grid_cells(coords: torch.Tensor, step: float | None = None) -> torch.Tensor:
    """Integer grid positions ``[N, P]`` of coordinates (tile corners or slice indices)."""
    c = coords.float()
    if step is None:
        gaps = [torch.unique(c[:, p]).diff() for p in range(c.shape[1])]
        positive = torch.cat([g[g > 0] for g in gaps]) if gaps else torch.zeros(0)
        step = float(positive.min()) if len(positive) else 1.0
    return torch.round((c - c.amin(0)) / step).long()


def mask_bag(coords: torch.Tensor, n_items: int, cfg: MaskConfig, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """Bool ``[n_items]``, True = masked: exactly ``round(ratio * n)`` items (at least one stays visible).

    Args:
        coords: ``[n_items, P]`` positions of the bag's real items.
        n_items: how many items the bag has.
        cfg: ratio and mode.
        generator: a seeded generator (``None``: torch's global one, whose state the trainer saves).
    """
    n_mask = min(n_items - 1, max(1, round(cfg.ratio * n_items))) if n_items > 1 else 0
    if cfg.mode == "random" or n_mask == 0:
        order = torch.randperm(n_items, generator=generator)
    else:
        cells = grid_cells(coords, cfg.step)
        half = cfg.block / 2.0
        # every item gets the rank of the first block (visited in random order) that covers it
        centres = torch.randperm(n_items, generator=generator)
        first = torch.full((n_items,), n_items, dtype=torch.long)
        covered = 0
        for rank, c in enumerate(centres.tolist()):
            inside = ((cells - cells[c]).abs().float() < half + 1e-6).all(1) & (first == n_items)
            first[inside] = rank
            covered += int(inside.sum())
            if covered >= n_mask:
                break
        tiebreak = torch.rand(n_items, generator=generator)
        order = torch.argsort(first.float() + tiebreak * 0.5)  # within a block, random order
    masked = torch.zeros(n_items, dtype=torch.bool)
    masked[order[:n_mask]] = True
    return masked


def visible_items(features: torch.Tensor, coords: torch.Tensor | None, real: torch.Tensor, masked: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The visible items of every bag, packed to the front and padded: ``(features [B, V, D], coords [B, V, P],
    mask [B, V], index [B, V])`` where ``index`` is each visible item's position in its bag."""
    keep = real & ~masked
    counts = keep.sum(1)
    v = max(1, int(counts.max()))
    index = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :v]
    vmask = torch.arange(v, device=real.device)[None, :] < counts[:, None]
    feats = features.gather(1, index[..., None].expand(-1, -1, features.shape[-1]))
    pos = None if coords is None else coords.gather(1, index[..., None].expand(-1, -1, coords.shape[-1]))
    return feats, pos, vmask, index


class MaskedBagDecoder(nn.Module):
    """A light transformer decoder from the encoder's visible tokens (and class token) back to item embeddings.

    Args:
        enc_dim: width of the encoder's tokens.
        out_dim: width of the items' embeddings (the reconstruction target).
        hidden: decoder width.
        layers / heads: decoder depth and heads.
        pos_dim / pos_scale: positions as in the encoder (:class:`~medvl.models.bag.BagConfig`).
    """

    def __init__(self, enc_dim: int, out_dim: int, hidden: int = 128, layers: int = 1, heads: int = 4,
                 pos_dim: int = 2, pos_scale: float = 256.0):
        super().__init__()
        self.embed = nn.Linear(enc_dim, hidden)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.normal_(self.mask_token, std=0.02)
        self.pos = FourierPositions(pos_dim, hidden, pos_scale) if pos_dim else None
        layer = nn.TransformerEncoderLayer(hidden, heads, hidden * 2, 0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, cls: torch.Tensor, visible: torch.Tensor, index: torch.Tensor, visible_mask: torch.Tensor,
                coords: torch.Tensor | None, real: torch.Tensor) -> torch.Tensor:
        """Predictions ``[B, N, out_dim]`` at every position.

        Args:
            cls: ``[B, enc_dim]`` the encoder's class token.
            visible: ``[B, V, enc_dim]`` encoded visible items (padded).
            index: ``[B, V]`` position of each visible item in the full bag.
            visible_mask: ``[B, V]`` True = a real visible item.
            coords: ``[B, N, P]`` positions of all items (or None).
            real: ``[B, N]`` True = a real item of the full bag.
        """
        b, n = real.shape
        x = self.mask_token.expand(b, n, -1).clone()
        vis = self.embed(visible)
        rows = torch.arange(b, device=x.device)[:, None].expand_as(index)
        x[rows[visible_mask], index[visible_mask]] = vis[visible_mask].to(x.dtype)
        if self.pos is not None and coords is not None:
            x = x + self.pos(coords if coords.dim() == 3 else coords.unsqueeze(-1)).to(x.dtype)
        x = torch.cat([self.embed(cls).unsqueeze(1).to(x.dtype), x], dim=1)
        keep = torch.cat([torch.ones_like(real[:, :1]), real], dim=1)
        x = self.blocks(x, src_key_padding_mask=~keep)
        return self.head(self.norm(x[:, 1:]))


def masked_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor,
                               norm_target: bool = True) -> torch.Tensor:
    """Mean squared error over masked items (``masked [B, N]``), per item averaged over its features."""
    target = target.float()
    if norm_target:
        target = F.layer_norm(target, target.shape[-1:])
    err = (pred.float() - target).pow(2).mean(-1)
    count = masked.sum()
    return (err * masked).sum() / count.clamp_min(1) if count else pred.sum() * 0.0

