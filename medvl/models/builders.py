"""Builders: a card's ``builder`` names one of these, and its ``kwargs`` are passed on unchanged.

Every builder returns a :class:`Backbone`: the source library's module (whose ``state_dict`` keys are the card's key
layout after mapping) plus how to get pooled and token outputs from it. Builders exist for timm, open_clip (vision
tower), Hugging Face transformers, MONAI and medvl's own implementations (:mod:`medvl.models.arch`). An unknown builder
is a :class:`ConfigError` naming the known ones.

Models published with their own code (hub ``trust_remote_code``) are built by the ``hf-remote`` builder only when the
caller passes ``trust_remote_code=True`` and a local folder holding that code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medvl.errors import ConfigError, InputError, require
from medvl.registry import Registry

__all__ = ["BUILDERS", "Backbone", "BuildContext", "build_backbone", "build_timm_module", "register_builder"]


class BuildContext:
    """What a builder may need besides its kwargs.

    Attributes:
        folder: the local folder of the weights (remote-code models load their code from it).
        trust_remote_code: the user explicitly allowed running the code shipped with the weights.
    """

    def __init__(self, folder: Path | None = None, trust_remote_code: bool = False):
        self.folder, self.trust_remote_code = folder, trust_remote_code


class Backbone(nn.Module):
    """A built architecture and how to read its outputs.

    Attributes:
        module: the source library's model; its state dict is what the weights load into.
        num_prefix_tokens: tokens before the patch tokens (class token, registers).
    """

    def __init__(self, module: nn.Module, pooled: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 tokens: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None, num_prefix_tokens: int = 0):
        super().__init__()
        self.module = module
        self._pooled, self._tokens = pooled, tokens
        self.num_prefix_tokens = int(num_prefix_tokens)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self._pooled(self.module, x)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` tokens (prefix tokens first)."""
        if self._tokens is None:
            raise ConfigError(f"{type(self.module).__name__} gives no token output: use the card's 'pooled' output")
        return self._tokens(self.module, x)

    @property
    def has_tokens(self) -> bool:
        return self._tokens is not None


#: builder name -> function(kwargs, context) -> Backbone
BUILDERS: Registry[Callable[[dict[str, Any], BuildContext], Backbone]] = Registry("builder")


def register_builder(name: str):
    """Decorator registering a builder under ``name``."""
    return BUILDERS.register(name)


def build_backbone(name: str, kwargs: dict[str, Any], context: BuildContext | None = None) -> Backbone:
    """Build with the builder ``name``; an unknown builder or argument is a clear :class:`ConfigError`."""
    builder = BUILDERS.get(name)
    try:
        return builder(dict(kwargs), context or BuildContext())
    except TypeError as exc:
        raise ConfigError(f"builder '{name}': {exc}") from None


# ------------------------------------------------------------------------------------------------ timm
def _timm_layer(name: str) -> Any:
    """Layer classes a card may name in timm kwargs (``mlp_layer``, ``act_layer``)."""
    import timm.layers

    table = {"SwiGLUPacked": timm.layers.SwiGLUPacked, "SwiGLU": timm.layers.SwiGLU, "SiLU": nn.SiLU,
             "GELU": nn.GELU, "Mlp": timm.layers.Mlp}
    if name not in table:
        raise ConfigError(f"unknown timm layer '{name}' in card kwargs; known: {', '.join(sorted(table))}")
    return table[name]


def _timm_tokens(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    feats = m.forward_features(x)
    if feats.ndim == 4:  # NHWC (Swin) or NCHW (CNN) maps -> tokens
        feats = feats.flatten(1, 2) if feats.shape[-1] == m.num_features else feats.flatten(2).transpose(1, 2)
    return feats


@register_builder("timm")
def build_timm(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """``timm.create_model(model_name, pretrained=False, **kwargs)``."""
    import timm

    name = kwargs.pop("model_name")
    for key in ("mlp_layer", "act_layer"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = _timm_layer(kwargs[key])
    if name not in timm.list_models():
        raise ConfigError(f"unknown timm model '{name}' (this timm is {timm.__version__})")
    return build_timm_module(timm.create_model(name, pretrained=False, **kwargs))


def build_timm_module(model: nn.Module) -> Backbone:
    """A timm model as a :class:`Backbone`: pooled = its pre-logits output, tokens = its feature map."""
    return Backbone(model, lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True), _timm_tokens,
                    getattr(model, "num_prefix_tokens", 0))


# ------------------------------------------------------------------------------------------------ open_clip
@register_builder("open_clip")
def build_open_clip(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """The vision tower of an open_clip model config (``embed_dim``, ``vision_cfg``, ``quick_gelu``): the text tower
    is not built, so no text model is resolved by name (offline-safe)."""
    open_clip = require("open_clip", "dev", "open_clip cards")
    visual = open_clip.model._build_vision_tower(int(kwargs["embed_dim"]), dict(kwargs["vision_cfg"]),
                                                 quick_gelu=bool(kwargs.get("quick_gelu", False)))
    return Backbone(visual, lambda m, x: m(x))


# ------------------------------------------------------------------------------------------------ transformers
#: model class -> its config class (transformers names)
HF_CLASSES = {
    "ViTModel": "ViTConfig",
    "Dinov2Model": "Dinov2Config",
    "Dinov2WithRegistersModel": "Dinov2WithRegistersConfig",
    "CLIPVisionModelWithProjection": "CLIPVisionConfig",
}


def _hf_pooled(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = m(pixel_values=x)
    for name in ("image_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return out.last_hidden_state[:, 0]


@register_builder("hf")
def build_hf(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """A transformers model class built from the card's config dict (``class``, ``config``, ``model_kwargs``)."""
    import transformers

    cls_name = kwargs["class"]
    if cls_name not in HF_CLASSES:
        raise ConfigError(f"hf builder: unsupported class '{cls_name}'; supported: {', '.join(sorted(HF_CLASSES))}")
    config = getattr(transformers, HF_CLASSES[cls_name])(**kwargs.get("config", {}))
    model = getattr(transformers, cls_name)(config, **kwargs.get("model_kwargs", {}))
    prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    return Backbone(model, _hf_pooled, lambda m, x: m(pixel_values=x).last_hidden_state, prefix)


@register_builder("hf-remote")
def build_hf_remote(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """A hub model with its own Python code, run only with ``trust_remote_code`` from a local folder."""
    if not context.trust_remote_code:
        raise ConfigError("this model runs Python code shipped with its weights; pass --trust-remote-code "
                          "(trust_remote_code=True) only if you trust that code")
    if context.folder is None or not (context.folder / "config.json").is_file():
        raise InputError(context.folder, "remote-code models need their hub folder (config.json and *.py files)")
    import transformers

    model = transformers.AutoModel.from_pretrained(str(context.folder), trust_remote_code=True,
                                                   local_files_only=True)
    method = kwargs.get("encode", "forward")
    return Backbone(model, lambda m, x: getattr(m, method)(x))


# ------------------------------------------------------------------------------------------------ MONAI
@register_builder("monai")
def build_monai(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """A network of ``monai.networks.nets`` by its name (``net``) with its kwargs."""
    nets = require("monai.networks.nets", feature="MONAI cards")
    name = kwargs.pop("net")
    factory = getattr(nets, name, None)
    if not callable(factory):
        raise ConfigError(f"unknown MONAI network '{name}' (monai.networks.nets)")
    return Backbone(factory(**kwargs), lambda m, x: m(x))


# ------------------------------------------------------------------------------------------------ medvl
@register_builder("medvl")
def build_medvl(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """medvl's own implementation of an architecture (``arch``) written from its paper."""
    from medvl.models.arch import ARCHITECTURES

    name = kwargs.pop("arch")
    return ARCHITECTURES.get(name)(**kwargs)


@register_builder("unavailable")
def build_unavailable(kwargs: dict[str, Any], context: BuildContext) -> Backbone:
    """A card whose architecture medvl does not implement yet: building it says so."""
    raise ConfigError(f"the architecture of this card is not available in medvl: {kwargs.get('reason', '')}".strip())
