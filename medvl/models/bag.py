"""Bag towers: encode a set or sequence of pre-extracted embeddings into one vector.

A slide is a bag of tile features (with level-0 coordinates); video frames or audio segments are bags with 1-D
positions. Input is a tensor ``[B, N, D_in]`` or a mapping with ``features [B, N, D_in]``, optional ``mask [B, N]``
(True = real item; bags are padded to a common length) and optional ``coords [B, N, P]`` (P = ``pos_dim``).

Two poolers: ``bag-attention`` (gated attention pooling, ABMIL) and ``bag-transformer`` (a class token and a small
transformer encoder; token outputs available for FILIP).

The same gated attention (:func:`gated_attention_weights`) also serves the stand-alone MIL poolers over one slide's
tile features (:class:`AttentionMIL`, with an optional classifier head; :class:`MeanPool`; :class:`TopKPool`): each
takes ``features [N, D]`` or ``[B, N, D]`` with an optional boolean ``mask [B, N]`` (True = real tile) and returns
``(pooled, weights)``; the weights say how much each tile counted, which
:func:`~medvl.pathology.heatmap.render_heatmap` can draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from medvl.config import Config
from medvl.errors import InputError
from medvl.models.registry import register_tower
from medvl.models.tower import Tower

__all__ = ["AttentionMIL", "BagConfig", "BagTower", "MeanPool", "TopKPool", "gated_attention_weights"]


@dataclass
class BagConfig(Config):
    """Options of a bag tower.

    Attributes:
        in_dim: width of the items' features (e.g. 1024 for UNI tiles).
        hidden: width inside the tower (and of its output).
        pooler: ``attention`` or ``transformer``.
        layers / heads: transformer depth and heads (ignored by ``attention``).
        pos_dim: 0 (no positions), 1 (sequence index / time) or 2 (slide coordinates).
        pos_scale: coordinates are divided by this before the Fourier encoding (e.g. pixels per tile).
        dropout: dropout inside the tower.
    """

    in_dim: int = 1024
    hidden: int = 256
    pooler: Literal["attention", "transformer"] = "transformer"
    layers: int = 2
    heads: int = 4
    pos_dim: int = 2
    pos_scale: float = 256.0
    dropout: float = 0.0


def gated_attention_weights(h: torch.Tensor, attn_v: nn.Linear, attn_u: nn.Linear | None, attn_w: nn.Linear,
                            mask: torch.Tensor) -> torch.Tensor:
    """Gated attention (Ilse et al., 2018, "ABMIL"): ``softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i)))`` over the
    unmasked items of each bag, ``[B, N]``; without ``attn_u`` the plain ``tanh`` variant. An all-masked bag gets zero
    weights, not NaN."""
    a = torch.tanh(attn_v(h))
    if attn_u is not None:
        a = a * torch.sigmoid(attn_u(h))
    scores = attn_w(a).squeeze(-1).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=1).nan_to_num(0.0)


def weighted_sum(weights: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i h_i`` per bag: ``[B, N]`` weights over ``[B, N, D]`` items -> ``[B, D]``."""
    return (weights.unsqueeze(-1) * items).sum(1)


class FourierPositions(nn.Module):
    """Sin/cos features of (scaled) positions, projected to the tower width."""

    def __init__(self, pos_dim: int, hidden: int, scale: float, n_freq: int = 8):
        super().__init__()
        self.scale = scale
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freq) * math.pi / 64.0, persistent=False)
        self.proj = nn.Linear(pos_dim * n_freq * 2, hidden)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        pos = coords.float() / self.scale
        pos = pos - pos.amin(dim=1, keepdim=True)  # translation invariant within a bag
        angles = pos.unsqueeze(-1) * self.freqs
        feats = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)
        return self.proj(feats)


class BagTower(Tower):
    modality = "bag"

    def __init__(self, cfg: BagConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.hidden
        self.inp = nn.Sequential(nn.Linear(cfg.in_dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout))
        self.pos = FourierPositions(cfg.pos_dim, cfg.hidden, cfg.pos_scale) if cfg.pos_dim else None
        self.grad_checkpointing = False
        if cfg.pooler == "transformer":
            self.cls = nn.Parameter(torch.zeros(1, 1, cfg.hidden))
            layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, cfg.hidden * 2, cfg.dropout,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.hidden)
        else:
            self.attn_v = nn.Linear(cfg.hidden, cfg.hidden // 2)
            self.attn_u = nn.Linear(cfg.hidden, cfg.hidden // 2)
            self.attn_w = nn.Linear(cfg.hidden // 2, 1)

    def _unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, torch.Tensor):
            feats, mask, coords = batch, None, None
        elif isinstance(batch, dict) and "features" in batch:
            feats, mask, coords = batch["features"], batch.get("mask"), batch.get("coords")
        else:
            raise InputError(None, "a bag batch is a tensor [B, N, D] or a mapping with 'features'")
        if feats.dim() != 3 or feats.shape[-1] != self.cfg.in_dim:
            raise InputError(None, f"bag features must be [B, N, {self.cfg.in_dim}], got {list(feats.shape)}")
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        return feats, mask.bool(), coords

    def _items(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        feats, mask, coords = self._unpack(batch)
        x = self.inp(feats)
        if self.pos is not None and coords is not None:
            x = x + self.pos(coords if coords.dim() == 3 else coords.unsqueeze(-1))
        return x, mask

    def encode_tokens_masked(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self._items(batch)
        if self.cfg.pooler != "transformer":
            return x, mask
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        full_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        if self.grad_checkpointing and self.training:
            from torch.utils.checkpoint import checkpoint

            x = checkpoint(self.encoder, x, None, ~full_mask, use_reentrant=False)
        else:
            x = self.encoder(x, src_key_padding_mask=~full_mask)
        return self.norm(x), full_mask

    def encode_tokens(self, batch: Any) -> torch.Tensor:
        return self.encode_tokens_masked(batch)[0]

    def encode(self, batch: Any) -> torch.Tensor:
        tokens, mask = self.encode_tokens_masked(batch)
        if self.cfg.pooler == "transformer":
            return tokens[:, 0]
        return weighted_sum(gated_attention_weights(tokens, self.attn_v, self.attn_u, self.attn_w, mask), tokens)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def checkpoint_kwargs(self) -> dict[str, Any]:
        return self.cfg.to_dict()


# ------------------------------------------------------------------------------------------------ MIL poolers
def _batched(features: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    single = features.ndim == 2
    if single:
        features = features.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if features.ndim != 3:
        raise ValueError(f"features must be [N, D] or [B, N, D], got {tuple(features.shape)}")
    if mask is None:
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    return features, mask.bool(), single


def _unbatch(pooled: torch.Tensor, weights: torch.Tensor, single: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return (pooled[0], weights[0]) if single else (pooled, weights)


class MeanPool(nn.Module):
    """Mean of the (unmasked) tile features."""

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None):
        x, m, single = _batched(features, mask)
        w = m.float() / m.float().sum(1, keepdim=True).clamp_min(1)
        return _unbatch(weighted_sum(w, x), w, single)


class TopKPool(nn.Module):
    """Mean of the ``k`` highest-scoring tiles; scores from a linear layer (trainable) over the features.

    Args:
        in_dim: feature width.
        k: tiles kept (fewer when a slide has fewer).
    """

    def __init__(self, in_dim: int, k: int = 8):
        super().__init__()
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.score = nn.Linear(in_dim, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None):
        x, m, single = _batched(features, mask)
        s = self.score(x).squeeze(-1).masked_fill(~m, float("-inf"))
        k = min(self.k, x.shape[1])
        top = s.topk(k, dim=1).indices
        sel = torch.zeros_like(s).scatter_(1, top, 1.0) * m.float()
        w = sel / sel.sum(1, keepdim=True).clamp_min(1)
        return _unbatch(weighted_sum(w, x), w, single)


class AttentionMIL(nn.Module):
    """Gated attention-MIL (ABMIL): ``a_i = softmax(w^T (tanh(V h_i) * sigmoid(U h_i)))``, pooled ``sum a_i h_i``.

    Args:
        in_dim: tile feature width.
        hidden: attention hidden width.
        n_classes: logits of a linear head on the pooled vector (0: return the pooled vector itself).
        dropout: dropout on the projected features.
        gated: use the gated variant (the plain ``tanh`` one otherwise).
        proj_dim: optional first projection of the features (``None`` keeps ``in_dim``).
    """

    def __init__(self, in_dim: int, hidden: int = 128, n_classes: int = 0, dropout: float = 0.0,
                 gated: bool = True, proj_dim: int | None = None):
        super().__init__()
        dim = proj_dim or in_dim
        self.proj = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(dropout)) if proj_dim else nn.Identity()
        self.attn_v = nn.Linear(dim, hidden)
        self.attn_u = nn.Linear(dim, hidden) if gated else None
        self.attn_w = nn.Linear(hidden, 1)
        self.head = nn.Linear(dim, n_classes) if n_classes > 0 else None
        self.out_dim = n_classes if n_classes > 0 else dim

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None):
        x, m, single = _batched(features, mask)
        h = self.proj(x)
        w = gated_attention_weights(h, self.attn_v, self.attn_u, self.attn_w, m)
        pooled = weighted_sum(w, h)
        out = self.head(pooled) if self.head is not None else pooled
        return _unbatch(out, w, single)


def _example_bag(tower: BagTower) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, tower.cfg.in_dim, generator=g)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    coords = torch.randint(0, 4096, (2, 5, tower.cfg.pos_dim), generator=g) if tower.cfg.pos_dim else None
    return {"features": feats, "mask": mask, **({"coords": coords} if coords is not None else {})}


def _factory(defaults: dict[str, Any]):
    def build(**kwargs: Any) -> BagTower:
        return BagTower(BagConfig.from_dict({**defaults, **kwargs}))

    return build


_TINY = {"in_dim": 16, "hidden": 16, "layers": 1, "heads": 2}
for _name, _tiny, _defaults in (
    ("bag-transformer", False, {"pooler": "transformer"}),
    ("bag-attention", False, {"pooler": "attention"}),
    ("bag-transformer-tiny", True, {"pooler": "transformer", **_TINY}),
    ("bag-attention-tiny", True, {"pooler": "attention", **_TINY}),
):
    register_tower(_name, "bag", tiny=_tiny, example_input=_example_bag,
                   description=f"{_defaults['pooler']} pooler over a bag of embeddings")(_factory(_defaults))
