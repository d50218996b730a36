"""Slide encoders over tile features, written from their papers (medvl's own implementations).

Every slide encoder takes a bag of tile features ``[B, N, D]`` and the tiles' integer grid positions ``[B, N, 2]``
(column, row: level-0 coordinates divided by the level-0 tile stride, see :func:`medvl.pathology.slide_embed`) and
returns one embedding per slide ``[B, dim]``:

- ``gigapath-slide``: Prov-GigaPath's slide encoder (Xu et al., Nature 2024): a linear patch embedding, a fixed 2-D
  sine-cosine position embedding on a ``slide_ngrids`` x ``slide_ngrids`` grid, a class token and a LongNet encoder
  (Ding et al., 2023) whose self-attention is *dilated*: the sequence is cut into segments of length ``w``; within a
  segment, head group ``g`` of ``r`` groups attends over the tokens at offsets ``g, g + r, ...``; the branches of all
  ``(w, r)`` pairs are mixed with weights from their softmax denominators. Parameter names follow the published
  torchscale layout (``encoder.layers.N.self_attn.q_proj``, ``ffn.fc1``, ``ffn.ffn_layernorm``, ...).
- ``titan-slide``: TITAN's vision encoder (Ding et al., 2024): patch features through an MLP embedding, a class token
  and a ViT whose attention carries a 2-D ALiBi bias (minus a per-head slope times the Euclidean distance between two
  tiles on the grid). Embedding: the class token after the final norm.
- ``perceiver-slide``: a Perceiver aggregator as PRISM describes it (Shaikovski et al., 2024): learned latents attend
  to the tile features (cross-attention), then to each other; the embedding is the first latent after a norm.
- ``gated-abmil``: CHIEF's slide aggregation (Wang et al., Nature 2024; the CLAM gated attention it builds on): a
  Linear + ReLU + dropout, gated attention (tanh and sigmoid branches, one score per tile); the embedding is the
  attention-weighted sum of the *input* features.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medvl.errors import ConfigError

__all__ = ["DilatedAttention", "GatedABMIL", "GigaPathSlide", "PerceiverSlide", "TitanSlide", "alibi_2d_bias",
           "sincos_2d"]


def _backbone(module: nn.Module):
    from medvl.models.builders import Backbone

    return Backbone(module, lambda m, x: m(*x))


# ------------------------------------------------------------------------------------------------ Prov-GigaPath
def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0))
    out = pos.double()[..., None] * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=-1).float()


def sincos_2d(dim: int, grid: torch.Tensor) -> torch.Tensor:
    """The fixed 2-D sine-cosine embedding (MAE layout: first half encodes the row, second half the column) of integer
    grid positions ``[..., 2]`` (column, row)."""
    return torch.cat([_sincos_1d(dim // 2, grid[..., 1]), _sincos_1d(dim // 2, grid[..., 0])], dim=-1)


class DilatedAttention(nn.Module):
    """LongNet dilated self-attention with the torchscale parameter names (``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj``, ``inner_attn_ln``)."""

    def __init__(self, dim: int, heads: int, segment_lengths: list[int], dilated_ratios: list[int],
                 subln: bool = True, eps: float = 1e-5, chunk_elements: int = 1 << 26):
        super().__init__()
        if dim % heads or len(segment_lengths) != len(dilated_ratios):
            raise ConfigError("DilatedAttention: dim must divide by heads; one dilated ratio per segment length")
        if any(heads % r for r in dilated_ratios):
            raise ConfigError(f"DilatedAttention: every dilated ratio must divide the {heads} heads")
        self.heads, self.segments, self.ratios = heads, list(segment_lengths), list(dilated_ratios)
        self.chunk_elements = chunk_elements
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.inner_attn_ln = nn.LayerNorm(dim, eps=eps) if subln else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, -1) for p in (self.q_proj, self.k_proj, self.v_proj))
        outs, lses = zip(*(self._branch(q, k, v, w, r) for w, r in zip(self.segments, self.ratios, strict=True)),
                         strict=True)
        weights = torch.softmax(torch.stack(lses), dim=0)  # [branches, B, N, H]
        out = (torch.stack(outs) * weights[..., None]).sum(0).reshape(b, n, d)
        if self.inner_attn_ln is not None:
            out = self.inner_attn_ln(out)
        return self.out_proj(out)

    def _branch(self, q, k, v, segment: int, ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One (segment length, ratio) branch: ``[B, N, H, d]`` outputs and ``[B, N, H]`` log-sum-exp (−inf where a
        token is not attended in this branch). Padding tokens are zeros and take part as keys, as in the source."""
        b, n, h, hd = q.shape
        w = min(segment, n)
        w_pad = -(-w // ratio) * ratio
        n_seg = -(-n // w)

        def sparse(t):  # [B, N, H, d] -> [B*n_seg, w_pad/ratio, H, d]: head group g keeps offsets g, g + r, ...
            t = F.pad(t, (0, 0, 0, 0, 0, n_seg * w - n)).view(b * n_seg, w, h, hd)
            t = F.pad(t, (0, 0, 0, 0, 0, w_pad - w)).view(b * n_seg, w_pad // ratio, ratio, h, hd)
            return t[:, :, self._groups(h, ratio, t.device), torch.arange(h, device=t.device)]

        qs, ks, vs = (sparse(t).transpose(1, 2) for t in (q, k, v))  # [S, H, m, d]
        out, lse = self._attend(qs, ks, vs)
        dense = q.new_zeros(b * n_seg, w_pad // ratio, ratio, h, hd)
        dense_lse = q.new_full((b * n_seg, w_pad // ratio, ratio, h), float("-inf"))
        groups, heads = self._groups(h, ratio, q.device), torch.arange(h, device=q.device)
        dense[:, :, groups, heads] = out.transpose(1, 2)
        dense_lse[:, :, groups, heads] = lse.transpose(1, 2)
        def crop(t):  # [B*n_seg, w_pad/r, r, ...] -> [B, N, ...]
            t = t.reshape(b, n_seg, w_pad, *t.shape[3:])[:, :, :w]
            return t.reshape(b, n_seg * w, *t.shape[3:])[:, :n]

        return crop(dense), crop(dense_lse)

    @staticmethod
    def _groups(heads: int, ratio: int, device) -> torch.Tensor:
        return torch.arange(heads, device=device) // (heads // ratio)

    def _attend(self, q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax attention with its log-sum-exp, in chunks of segments so memory stays bounded."""
        s, h, m, hd = q.shape
        step = max(1, self.chunk_elements // max(1, h * m * m))
        outs, lses = [], []
        for i in range(0, s, step):
            scores = q[i:i + step] @ k[i:i + step].transpose(-1, -2) / math.sqrt(hd)
            lse = torch.logsumexp(scores.float(), dim=-1)
            outs.append(torch.exp(scores.float() - lse[..., None]).to(v.dtype) @ v[i:i + step])
            lses.append(lse)
        return torch.cat(outs), torch.cat(lses)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, subln: bool, eps: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps) if subln else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x).float()).type_as(x)
        return self.fc2(self.ffn_layernorm(x) if self.ffn_layernorm is not None else x)


class _LongNetLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, segments: list[int], ratios: list[int], eps: float):
        super().__init__()
        self.self_attn = DilatedAttention(dim, heads, segments, ratios, eps=eps)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = _FeedForward(dim, hidden, True, eps)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.ffn(self.final_layer_norm(x))


class _LongNetEncoder(nn.Module):
    def __init__(self, depth: int, **kw: Any):
        super().__init__()
        self.layers = nn.ModuleList(_LongNetLayer(**kw) for _ in range(depth))
        self.layer_norm = nn.LayerNorm(kw["dim"], eps=kw["eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class GigaPathSlide(nn.Module):
    """Prov-GigaPath's LongNet slide encoder (``patch_embed.proj``, ``cls_token``, ``encoder.*``, ``norm``)."""

    def __init__(self, in_dim: int = 1536, dim: int = 768, depth: int = 12, heads: int = 16, mlp_ratio: float = 4.0,
                 slide_ngrids: int = 1000, segment_lengths: list[int] | None = None,
                 dilated_ratios: list[int] | None = None, global_pool: bool = False, eps: float = 1e-5):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Linear(in_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.slide_ngrids, self.global_pool, self.dim = slide_ngrids, global_pool, dim
        self.encoder = _LongNetEncoder(depth, dim=dim, heads=heads, hidden=int(dim * mlp_ratio),
                                       segments=segment_lengths or [1024, 5792, 32768, 185363, 1048576],
                                       ratios=dilated_ratios or [1, 2, 4, 8, 16], eps=eps)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def grid_limit(self) -> int:
        """Grid positions must lie in ``[0, slide_ngrids)`` per axis (checked before the forward)."""
        return self.slide_ngrids

    def forward(self, feats: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(feats) + sincos_2d(self.dim, grid).to(feats.dtype)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.encoder(x)
        return self.norm(x[:, 1:].mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]


# ------------------------------------------------------------------------------------------------ TITAN
def alibi_2d_bias(grid: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, H, 1 + N, 1 + N]`` 2-D ALiBi bias: minus slope_h times the Euclidean grid distance between tiles (the
    class token, first, gets no bias). Slopes are ALiBi's geometric sequence ``2^(-8 h / H)``."""
    slopes = torch.tensor([2 ** (-8.0 * (i + 1) / heads) for i in range(heads)], device=grid.device)
    g = grid.float()
    dist = torch.cdist(g, g)  # [B, N, N]
    bias = F.pad(-dist[:, None] * slopes.view(1, -1, 1, 1), (1, 0, 1, 0))
    return bias


class TitanSlide(nn.Module):
    """TITAN's slide ViT over a grid of tile features (``patch_embed``, ``cls_token``, ``blocks``, ``norm``)."""

    def __init__(self, in_dim: int = 768, dim: int = 768, depth: int = 6, heads: int = 12, mlp_ratio: float = 4.0):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.patch_embed = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.heads = heads

    def forward(self, feats: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(feats.shape[0], -1, -1), self.patch_embed(feats)], dim=1)
        bias = alibi_2d_bias(grid, self.heads).to(x.dtype)
        for block in self.blocks:
            x = block(x, attn_mask=bias)
        return self.norm(x)[:, 0]


# ------------------------------------------------------------------------------------------------ PRISM
class _CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm_latents, self.norm_context = nn.LayerNorm(dim), nn.LayerNorm(context_dim)
        self.attn = nn.MultiheadAttention(dim, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        ctx = self.norm_context(context)
        latents = latents + self.attn(self.norm_latents(latents), ctx, ctx, need_weights=False)[0]
        return latents + self.mlp(self.norm_mlp(latents))


class PerceiverSlide(nn.Module):
    """A Perceiver aggregator (``latents``, ``cross``, ``blocks``, ``norm``): PRISM's slide encoder as described."""

    def __init__(self, in_dim: int = 2560, dim: int = 1280, latents: int = 512, cross_layers: int = 1,
                 depth: int = 6, heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.latents = nn.Parameter(torch.randn(latents, dim) * 0.02)
        self.cross = nn.ModuleList(_CrossAttention(dim, in_dim, heads, mlp_ratio) for _ in range(cross_layers))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, feats: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        x = self.latents.unsqueeze(0).expand(feats.shape[0], -1, -1).to(feats.dtype)
        for layer in self.cross:
            x = layer(x, feats)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


# ------------------------------------------------------------------------------------------------ CHIEF
class _GatedAttention(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.attention_a = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.attention_b = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.attention_c = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.attention_c(self.attention_a(h) * self.attention_b(h))


class GatedABMIL(nn.Module):
    """CHIEF's attention pooling, CLAM's parameter names: ``attention_net.0`` (Linear in->hidden), ReLU, dropout,
    ``attention_net.3`` (gated attention); the embedding is the attention-weighted sum of the *input* features."""

    def __init__(self, in_dim: int = 768, hidden: int = 512, attn_dim: int = 256, dropout: float = 0.25):
        super().__init__()
        self.attention_net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                           _GatedAttention(hidden, attn_dim, dropout))

    def weights(self, feats: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, N]`` (softmax over the tiles)."""
        return torch.softmax(self.attention_net(feats)[..., 0], dim=-1)

    def forward(self, feats: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        return (self.weights(feats).unsqueeze(-1) * feats).sum(dim=1)


#: architecture name -> factory(**card kwargs) -> Backbone; added to :data:`medvl.models.arch.ARCHITECTURES`
SLIDE_ARCHITECTURES = {
    "gigapath-slide": lambda **kw: _backbone(GigaPathSlide(**kw)),
    "titan-slide": lambda **kw: _backbone(TitanSlide(**kw)),
    "perceiver-slide": lambda **kw: _backbone(PerceiverSlide(**kw)),
    "gated-abmil": lambda **kw: _backbone(GatedABMIL(**kw)),
}
