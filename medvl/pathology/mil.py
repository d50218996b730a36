"""Multiple-instance pooling of a slide's tile features into one slide vector.

Every module takes ``features [N, D]`` (one slide) or ``[B, N, D]`` with an optional boolean ``mask [B, N]``
(True = real tile, for padded batches) and returns ``(pooled [B, D'] or [D'], weights [B, N] or [N])``: the
weights say how much each tile counted, which :func:`~medvl.pathology.heatmap.render_heatmap` can draw.

- :class:`MeanPool`: the average tile.
- :class:`TopKPool`: the average of the ``k`` tiles scoring highest under a learned (or given) linear score.
- :class:`AttentionMIL`: gated attention pooling (Ilse et al., 2018, "ABMIL") with an optional classifier head.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttentionMIL", "MeanPool", "TopKPool"]


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
        return _unbatch(torch.einsum("bn,bnd->bd", w, x), w, single)


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
        return _unbatch(torch.einsum("bn,bnd->bd", w, x), w, single)


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

    def attention_logits(self, h: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.attn_v(h))
        if self.attn_u is not None:
            a = a * torch.sigmoid(self.attn_u(h))
        return self.attn_w(a).squeeze(-1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None):
        x, m, single = _batched(features, mask)
        h = self.proj(x)
        logits = self.attention_logits(h).masked_fill(~m, float("-inf"))
        w = torch.softmax(logits, dim=1).nan_to_num(0.0)  # all-masked rows give zero weights, not NaN
        pooled = torch.einsum("bn,bnd->bd", w, h)
        out = self.head(pooled) if self.head is not None else pooled
        return _unbatch(out, w, single)
