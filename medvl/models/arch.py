"""Architectures of published encoders that no installed library provides, written from their papers.

Each one keeps the parameter names of the published weights, so the checkpoint loads with the card's key mapping:

- ``ctranspath``: a Swin-T whose patch embedding is a convolutional stem (Wang et al., Medical Image Analysis 2022:
  two 3x3 stride-2 convolutions with batch norm and ReLU, then a 1x1 convolution to the embedding width). The Swin
  stages are timm's.
- ``coca-vision``: the image side of a CoCa model as CONCH uses it (Lu et al., Nature Medicine 2024; Yu et al., CoCa
  2022): a ViT trunk, then attentional pooling (learned queries attending over the trunk's tokens), a LayerNorm and,
  for the joint space, a square projection. CONCH v1.5 has the contrastive pooler only.
- ``keep-vision``: KEEP's image side (Zhou et al., 2024): a ViT-L/16 and a two-layer GELU MLP head whose output is
  L2-normalised.

Each factory returns a :class:`~medvl.models.builders.Backbone`: the module whose state dict takes the weights,
``pooled(x)`` (the card's embedding before any normalisation) and, where it has them, ``tokens(x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medvl.registry import Registry

if TYPE_CHECKING:
    from medvl.models.builders import Backbone

__all__ = ["ARCHITECTURES", "AttentionalPool", "CocaVision", "ConvStem", "KeepVision", "ctranspath"]


class ConvStem(nn.Module):
    """CTransPath's patch embedding: 2 x (3x3 conv stride 2, BN, ReLU), then 1x1 conv; tokens out in NHWC.

    The signature is timm's ``embed_layer`` contract (Swin passes ``img_size``, ``patch_size``, ``in_chans``,
    ``embed_dim``, ``norm_layer``, ``output_fmt``...). Widths go ``embed_dim // 8`` then ``embed_dim // 4``.
    """

    def __init__(self, img_size: Any = 224, patch_size: Any = 4, in_chans: int = 3, embed_dim: int = 96,
                 norm_layer: Callable[..., nn.Module] | None = None, **_: Any):
        super().__init__()
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        patch = patch_size if isinstance(patch_size, int) else patch_size[0]
        if patch != 4 or embed_dim % 8:
            raise ValueError("ConvStem needs patch_size 4 and an embed_dim divisible by 8")
        self.img_size, self.patch_size = size, (4, 4)
        self.grid_size = (size[0] // 4, size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        width_in, width = in_chans, embed_dim // 8
        for _i in range(2):
            layers += [nn.Conv2d(width_in, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            width_in, width = width, width * 2
        layers.append(nn.Conv2d(width_in, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


def ctranspath(img_size: int = 224, embed_dim: int = 96, depths: tuple[int, ...] = (2, 2, 6, 2),
               num_heads: tuple[int, ...] = (3, 6, 12, 24), window_size: int = 7, **kwargs: Any) -> Backbone:
    """CTransPath: timm's Swin-T with :class:`ConvStem`, no classifier; the embedding is the average-pooled last
    stage (768-d at full size). The state dict has timm's current key layout; the card renames the published one."""
    from timm.models.swin_transformer import SwinTransformer

    from medvl.models.builders import build_timm_module

    model = SwinTransformer(img_size=img_size, embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(num_heads),
                            window_size=window_size, embed_layer=ConvStem, num_classes=0, **kwargs)
    return build_timm_module(model)


class AttentionalPool(nn.Module):
    """Learned queries attend over the (normalised) tokens: CoCa's attentional pooler.

    Parameter names: ``query`` [n_queries, d_model], ``ln_q``, ``ln_k`` and ``attn`` (a multi-head attention whose
    keys and values come from ``context_dim``-wide tokens).
    """

    def __init__(self, d_model: int, context_dim: int, n_head: int = 8, n_queries: int = 1):
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keys = self.ln_k(tokens)
        queries = self.ln_q(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.attn(queries, keys, keys, need_weights=False)[0]


def _own(module: nn.Module) -> Backbone:
    from medvl.models.builders import Backbone as _Backbone

    tokens = (lambda m, x: m.tokens(x)) if hasattr(module, "tokens") else None
    return _Backbone(module, lambda m, x: m.pooled(x), tokens, getattr(module, "num_prefix_tokens", 0))


class CocaVision(nn.Module):
    """CoCa image tower: ViT trunk (``trunk.*``), contrastive pooler (``attn_pool_contrast``, ``ln_contrast``),
    optional projection ``proj_contrast`` and optional captioning pooler (``attn_pool_caption``, ``ln_caption``).

    ``pooled`` is the pooled, normalised contrastive token *without* the projection (what CONCH calls
    ``proj_contrast=False``: the features for MIL and linear probes); ``project`` maps it into the joint space.
    """

    def __init__(self, trunk: dict[str, Any], embed_dim: int, heads: int = 8, n_queries: int = 1,
                 projection: bool = True, caption_dim: int | None = None, caption_queries: int = 256):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(**{"num_classes": 0, "dynamic_img_size": True, **trunk})
        width = self.trunk.num_features
        self.attn_pool_contrast = AttentionalPool(embed_dim, width, heads, n_queries)
        self.ln_contrast = nn.LayerNorm(embed_dim)
        if projection:
            self.proj_contrast = nn.Parameter(width ** -0.5 * torch.randn(embed_dim, embed_dim))
        if caption_dim is not None:
            self.attn_pool_caption = AttentionalPool(caption_dim, width, heads, caption_queries)
            self.ln_caption = nn.LayerNorm(caption_dim)
        self.num_prefix_tokens = int(self.trunk.num_prefix_tokens)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.forward_features(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_contrast(self.attn_pool_contrast(self.tokens(x))[:, 0])

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled @ self.proj_contrast


class KeepVision(nn.Module):
    """KEEP's image side: ``visual`` (timm ViT) and ``visual_head`` (Linear, GELU, Linear)."""

    def __init__(self, trunk: dict[str, Any], model_name: str = "vit_large_patch16_224", projection_dim: int = 768):
        super().__init__()
        import timm

        self.visual = timm.create_model(model_name, pretrained=False, **{"num_classes": 0, **trunk})
        width = self.visual.num_features
        self.visual_head = nn.Sequential(nn.Linear(width, projection_dim), nn.GELU(),
                                         nn.Linear(projection_dim, projection_dim))
        self.num_prefix_tokens = int(self.visual.num_prefix_tokens)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual_head(self.visual(x))


#: architecture name -> factory(**card kwargs) -> Backbone
ARCHITECTURES: Registry[Callable[..., Backbone]] = Registry("medvl architecture")
ARCHITECTURES.add("ctranspath", ctranspath)
ARCHITECTURES.add("coca-vision", lambda **kw: _own(CocaVision(**kw)))
ARCHITECTURES.add("keep-vision", lambda **kw: _own(KeepVision(**kw)))


from medvl.models.slide_arch import SLIDE_ARCHITECTURES  # noqa: E402 - the slide encoders join the same table

for _name, _factory in SLIDE_ARCHITECTURES.items():
    ARCHITECTURES.add(_name, _factory)
