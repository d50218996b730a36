"""Pretrained models from local paths, in the formats published pathology/radiology models use.

- Hugging Face encoder folders (BioBERT, PubMedBERT, MiniLM): the ``hf-text`` tower (:mod:`medvl.models.text`).
- Hugging Face ``CLIPModel`` folders (PLIP, QuiltNet style): :func:`from_hf_clip`; towers ``hf-clip-vision`` and
  ``hf-clip-text`` keep CLIP's own projections, so the embeddings equal the source model's.
- open_clip state dicts with their model config (CONCH, BiomedCLIP style): :func:`from_open_clip`; towers
  ``open-clip-image`` and ``open-clip-text``.
- timm state dicts (UNI style): the ``timm`` image tower with ``weights=PATH`` (:mod:`medvl.models.image`).

Weights load safely (safetensors, or torch files with ``weights_only=True``); nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medvl.errors import InputError
from medvl.models.registry import register_tower
from medvl.models.tower import Tower

__all__ = ["from_hf_clip", "from_open_clip"]

#: CLIP's (OpenAI) image normalisation, used by PLIP/QuiltNet (HF CLIP) and CONCH/BiomedCLIP (open_clip)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _clip_data_config(size: int) -> dict[str, Any]:
    return {"input_size": (3, int(size), int(size)), "mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic"}


# ------------------------------------------------------------------------------------------------ HF CLIPModel
class HFClipTower(Tower):
    """One side of a Hugging Face CLIP model, including its projection (``embed_dim`` = projection dim)."""

    def __init__(self, model: nn.Module, side: str, tokenizer: Any = None, max_length: int = 77):
        super().__init__()
        self.model, self.side, self.tokenizer, self.max_length = model, side, tokenizer, max_length
        self.modality = side
        self.embed_dim = int(model.config.projection_dim)
        if side == "image":
            self.data_config = _clip_data_config(model.config.image_size)

    def encode(self, batch: Any) -> torch.Tensor:
        if self.side == "image":
            return self.model(pixel_values=batch).image_embeds
        enc = self.tokenizer(list(batch), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        return self.model(input_ids=enc["input_ids"].to(device),
                          attention_mask=enc["attention_mask"].to(device)).text_embeds

    def checkpoint_kwargs(self) -> dict[str, Any]:
        return {"hf_config": self.model.config.to_dict(), "max_length": self.max_length}

    def save_tokenizer(self, folder: str | Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder))


def _hf_clip(side: str, path: str | None, hf_config: dict | None, tokenizer_path: str | None,
             max_length: int) -> HFClipTower:
    from transformers import (
        AutoTokenizer,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    cls, cfg_cls = ((CLIPVisionModelWithProjection, CLIPVisionConfig) if side == "image"
                    else (CLIPTextModelWithProjection, CLIPTextConfig))
    if hf_config is not None:
        model = cls(cfg_cls.from_dict(hf_config))
    else:
        if path is None or not Path(path).is_dir():
            raise InputError(path, "not a Hugging Face CLIPModel folder")
        from transformers import CLIPConfig

        full = CLIPConfig.from_pretrained(path)
        side_cfg = full.vision_config if side == "image" else full.text_config
        side_cfg.projection_dim = full.projection_dim  # the side configs do not carry the shared width
        model = cls.from_pretrained(path, config=side_cfg)
    tokenizer = None
    if side == "text":
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path or path))
    tower = HFClipTower(model, side, tokenizer, max_length)
    tower.random_weights = hf_config is not None  # rebuilt from a config: the weights come from a checkpoint, or never
    return tower


def _example_clip_image(tower: HFClipTower) -> torch.Tensor:
    size = tower.model.config.image_size
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))


@register_tower("hf-clip-vision", "image", description="vision side of a local Hugging Face CLIPModel folder",
                example_input=_example_clip_image)
def hf_clip_vision(path: str | None = None, hf_config: dict | None = None, max_length: int = 77,
                   tokenizer_path: str | None = None) -> HFClipTower:
    return _hf_clip("image", path, hf_config, None, max_length)


@register_tower("hf-clip-text", "text", description="text side of a local Hugging Face CLIPModel folder",
                example_input=lambda t: ["a photo of breast cancer", "normal tissue"])
def hf_clip_text(path: str | None = None, hf_config: dict | None = None, max_length: int = 77,
                 tokenizer_path: str | None = None) -> HFClipTower:
    return _hf_clip("text", path, hf_config, tokenizer_path, max_length)


def from_hf_clip(path: str | Path) -> Any:
    """A :class:`MultiModalModel` from a Hugging Face ``CLIPModel`` folder (image + text, CLIP's temperature)."""
    from medvl.models.multimodal import ModelConfig, MultiModalModel, TowerSpec

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise InputError(path, "not a Hugging Face model folder (no config.json)")
    hf = json.loads(cfg_file.read_text())
    dim = int(hf.get("projection_dim", 512))
    config = ModelConfig(towers={
        "image": TowerSpec("hf-clip-vision", {"path": str(path)}, projection="none"),
        "text": TowerSpec("hf-clip-text", {"path": str(path)}, projection="none"),
    }, embed_dim=dim, init_temperature=1.0 / float(torch.tensor(hf.get("logit_scale_init_value", 2.6592)).exp()))
    return MultiModalModel(config)


# ------------------------------------------------------------------------------------------------ open_clip
def _open_clip_model(model_cfg: dict[str, Any]) -> nn.Module:
    from medvl.errors import require

    open_clip = require("open_clip", feature="open_clip models")
    return open_clip.model.CLIP(**model_cfg)


class OpenClipImageTower(Tower):
    modality = "image"

    def __init__(self, model_cfg: dict[str, Any], visual: nn.Module):
        super().__init__()
        self.model_cfg, self.visual = model_cfg, visual
        self.embed_dim = int(model_cfg["embed_dim"])
        self.data_config = _clip_data_config(model_cfg.get("vision_cfg", {}).get("image_size", 224))

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        return self.visual(batch)

    def checkpoint_kwargs(self) -> dict[str, Any]:
        return {"model_cfg": self.model_cfg}


class OpenClipTextTower(Tower):
    modality = "text"

    def __init__(self, model_cfg: dict[str, Any], clip: nn.Module):
        super().__init__()
        import open_clip

        clip.visual = nn.Identity()  # the image side lives in its own tower
        self.model_cfg, self.clip = model_cfg, clip
        self.embed_dim = int(model_cfg["embed_dim"])
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=clip.context_length)

    def encode(self, batch: Any) -> torch.Tensor:
        tokens = batch if isinstance(batch, torch.Tensor) else self.tokenizer(list(batch))
        return self.clip.encode_text(tokens.to(self.clip.token_embedding.weight.device))

    def checkpoint_kwargs(self) -> dict[str, Any]:
        return {"model_cfg": self.model_cfg}


def _load_open_clip_side(model_cfg: dict[str, Any], weights: str | None) -> nn.Module:
    from medvl.models.weights import load_state_file

    model = _open_clip_model(model_cfg)
    if weights:
        state = load_state_file(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "attn_mask" not in k]:
            raise InputError(weights, f"weights do not match the open_clip config (missing {missing[:3]}, "
                                      f"unexpected {unexpected[:3]})")
    return model


@register_tower("open-clip-image", "image", description="image side of an open_clip model (config + state dict)",
                example_input=lambda t: torch.rand(2, 3, t.model_cfg["vision_cfg"].get("image_size", 224),
                                                   t.model_cfg["vision_cfg"].get("image_size", 224)))
def open_clip_image(model_cfg: dict[str, Any], weights: str | None = None) -> OpenClipImageTower:
    tower = OpenClipImageTower(model_cfg, _load_open_clip_side(model_cfg, weights).visual)
    tower.random_weights = not weights
    return tower


@register_tower("open-clip-text", "text", description="text side of an open_clip model (config + state dict)",
                example_input=lambda t: ["a photo of breast cancer", "normal tissue"])
def open_clip_text(model_cfg: dict[str, Any], weights: str | None = None,
                   tokenizer_path: str | None = None) -> OpenClipTextTower:
    tower = OpenClipTextTower(model_cfg, _load_open_clip_side(model_cfg, weights))
    tower.random_weights = not weights
    return tower


def from_open_clip(config_path: str | Path, weights: str | Path) -> Any:
    """A :class:`MultiModalModel` from an open_clip model config (JSON: ``embed_dim``, ``vision_cfg``, ``text_cfg``,
    or a file with ``model_cfg`` inside, as CONCH/BiomedCLIP publish) and a state dict."""
    from medvl.models.multimodal import ModelConfig, MultiModalModel, TowerSpec
    from medvl.models.weights import load_state_file

    config_path = Path(config_path)
    if not config_path.is_file():
        raise InputError(config_path, "open_clip model config not found")
    cfg = json.loads(config_path.read_text())
    cfg = cfg.get("model_cfg", cfg)
    dim = int(cfg["embed_dim"])
    state = load_state_file(weights)
    scale = float(state["logit_scale"].exp()) if "logit_scale" in state else 1 / 0.07
    config = ModelConfig(towers={
        "image": TowerSpec("open-clip-image", {"model_cfg": cfg, "weights": str(weights)}, projection="none"),
        "text": TowerSpec("open-clip-text", {"model_cfg": cfg, "weights": str(weights)}, projection="none"),
    }, embed_dim=dim, init_temperature=1.0 / scale)
    return MultiModalModel(config)


# ------------------------------------------------------------------------------------------------ tiny variants
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@register_tower("open-clip-image-tiny", "image", tiny=True, description="tiny open_clip ViT",
                example_input=lambda t: torch.rand(2, 3, 32, 32))
def open_clip_image_tiny(model_cfg: dict[str, Any] | None = None, weights: str | None = None) -> OpenClipImageTower:
    return open_clip_image(model_cfg or TINY_OPEN_CLIP, weights)


@register_tower("open-clip-text-tiny", "text", tiny=True, description="tiny open_clip text transformer",
                example_input=lambda t: ["a photo of breast cancer", "normal tissue"])
def open_clip_text_tiny(model_cfg: dict[str, Any] | None = None, weights: str | None = None,
                        tokenizer_path: str | None = None) -> OpenClipTextTower:
    return open_clip_text(model_cfg or TINY_OPEN_CLIP, weights)


def tiny_hf_clip_config() -> Any:
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={"vocab_size": 256, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 64},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 2, "num_attention_heads": 4},
        projection_dim=16,
    )


@register_tower("hf-clip-vision-tiny", "image", tiny=True, description="tiny HF CLIP vision side",
                example_input=_example_clip_image)
def hf_clip_vision_tiny(hf_config: dict | None = None, max_length: int = 77,
                        tokenizer_path: str | None = None) -> HFClipTower:
    return _hf_clip("image", None, hf_config or tiny_hf_clip_config().vision_config.to_dict() | {"projection_dim": 16},
                    None, max_length)
