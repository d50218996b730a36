"""Named model configurations: ``register_model`` / ``list_models`` / ``get_model_config``, and the built-in ones.

A named model is a function returning a :class:`~medvl.models.multimodal.ModelConfig`;
:func:`medvl.models.create_model` builds it with fresh weights (a checkpoint folder brings its own). Towers without
a weights file are a random initialisation: ``create_model`` builds them only with ``random_weights=True``.
"""

from __future__ import annotations

from collections.abc import Callable

from medvl.models.multimodal import ModelConfig, TowerSpec
from medvl.registry import Registry

__all__ = ["MODELS", "get_model_config", "list_models", "register_model"]

MODELS: Registry[Callable[[], ModelConfig]] = Registry("model", hint=" (or a checkpoint folder)")


def register_model(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator registering a function that returns a :class:`ModelConfig` under ``name``."""
    return MODELS.register(name)


def list_models() -> list[str]:
    """Names accepted by :func:`medvl.models.create_model` (besides checkpoint directories)."""
    return MODELS.names()


def get_model_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` registered under ``name``; a clear error listing the known names otherwise."""
    return MODELS.get(name)()


@register_model("tiny-clip")
def tiny_clip() -> ModelConfig:
    """Tiny image/text model for tests: timm-tiny image tower and a 2-layer BERT (random weights: built only with
    ``random_weights=True``, recorded in every output)."""
    return ModelConfig(
        towers={"image": TowerSpec("timm-tiny"), "text": TowerSpec("hf-text-tiny")}, embed_dim=32,
    )


@register_model("tiny-multimodal")
def tiny_multimodal() -> ModelConfig:
    """Tiny text + bag + tabular model (no image tower): binding and DDP tests (random weights, as tiny-clip)."""
    return ModelConfig(
        towers={
            "text": TowerSpec("hf-text-tiny"),
            "bag": TowerSpec("bag-transformer-tiny"),
            "tabular": TowerSpec("tabular-mlp-tiny", {"dropout": 0.0}),
        },
        embed_dim=16,
    )


@register_model("breastmnist-demo")
def breastmnist_demo() -> ModelConfig:
    """The demo's model: a small timm CNN trained from scratch and the offline MiniLM text encoder."""
    return ModelConfig(
        towers={
            "image": TowerSpec("timm", {"model_name": "resnet10t"}),
            "text": TowerSpec("hf-text", {"max_length": 64}),
        },
        embed_dim=128,
    )


@register_model("clip-vitb16-bertbase")
def clip_vitb16_bertbase() -> ModelConfig:
    """ViT-B/16 image tower and a BERT-base sized text tower (random init; the GPU benchmark's model)."""
    bert_base = {
        "model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
    }
    return ModelConfig(
        towers={
            "image": TowerSpec("timm", {"model_name": "vit_base_patch16_224"}),
            "text": TowerSpec("hf-text", {"hf_config": bert_base, "max_length": 77}),
        },
        embed_dim=512,
    )
