"""Image towers built with timm: any timm architecture, weights from a local file.

``create_tower("timm", model_name="vit_base_patch16_224", weights="/path/model.safetensors")`` builds the backbone
without a classifier head and loads the weights (safetensors, or a torch file read with ``weights_only=True``).
``data_config`` carries the preprocessing the weights expect (input size, mean, std, interpolation), which the tile
pipeline applies. ``timm-tiny`` is timm's ``test_vit`` for tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medvl.errors import ConfigError, InputError
from medvl.models.registry import register_tower
from medvl.models.tower import Tower

__all__ = ["TimmImageTower"]

#: key prefixes that wrappers (DDP, Lightning, open_clip visual towers) put before the backbone's own names
_PREFIXES = ("module.", "model.", "backbone.", "visual.trunk.", "trunk.", "encoder.")


def _strip_prefixes(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if not any(k in own for k in state) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


class TimmImageTower(Tower):
    """A timm backbone whose pooled, pre-logits features are the embedding.

    Args:
        model_name: any timm architecture name.
        weights: optional local weights file; classifier-head keys are ignored, any other mismatch is an error.
        trust_pickle: allow a pickle-based weights file that needs full unpickling (runs code from the file).
        img_size: input size for architectures that take it (ViTs); ``None`` keeps the default.
    """

    modality = "image"

    def __init__(
        self,
        model_name: str,
        weights: str | Path | None = None,
        img_size: int | None = None,
        trust_pickle: bool = False,
    ):
        super().__init__()
        import timm

        if model_name not in timm.list_models():
            raise ConfigError(f"unknown timm model '{model_name}' (see timm.list_models())")
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
        if img_size is not None:
            kwargs["img_size"] = img_size
        try:
            self.model = timm.create_model(model_name, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"timm model '{model_name}': {exc}") from None
        self.model_name = model_name
        if weights is not None:
            self._load(weights, trust_pickle)
            self.random_weights = False
        self.embed_dim = int(self.model.num_features if not hasattr(self.model, "head_hidden_size")
                             else self.model.head_hidden_size or self.model.num_features)
        self.data_config = self._data_config()

    def _load(self, weights: str | Path, trust_pickle: bool) -> None:
        from medvl.models.weights import load_state_file

        own = self.model.state_dict()
        state = _strip_prefixes(load_state_file(weights, trust_pickle=trust_pickle), set(own))
        state = {k: v for k, v in state.items() if k in own or not k.startswith(("head", "fc.", "classifier"))}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(weights, f"weights do not fit timm '{self.model_name}': {len(missing)} missing keys "
                             f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")

    def _data_config(self) -> dict[str, Any]:
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=self.model)
        return {
            "input_size": tuple(int(v) for v in cfg["input_size"]),
            "mean": tuple(float(v) for v in cfg["mean"]),
            "std": tuple(float(v) for v in cfg["std"]),
            "interpolation": str(cfg.get("interpolation", "bicubic")),
            "crop_pct": float(cfg.get("crop_pct", 1.0)),
        }

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised images -> ``[B, embed_dim]`` pooled features."""
        feats = self.model.forward_features(batch)
        return self.model.forward_head(feats, pre_logits=True)

    def encode_tokens(self, batch: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(batch)
        if feats.ndim == 4:  # CNN feature map -> tokens
            return feats.flatten(2).transpose(1, 2)
        return feats

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self.model, "set_grad_checkpointing"):
            self.model.set_grad_checkpointing(enable)


def _example(tower: TimmImageTower) -> torch.Tensor:
    c, h, w = tower.data_config["input_size"]
    return torch.rand(2, c, h, w)


@register_tower("timm", "image", description="any timm architecture (model_name=...), optional local weights",
                example_input=_example)
def timm_tower(model_name: str = "vit_base_patch16_224", weights: str | None = None,
               img_size: int | None = None, trust_pickle: bool = False) -> TimmImageTower:
    """Any timm image backbone."""
    return TimmImageTower(model_name, weights=weights, img_size=img_size, trust_pickle=trust_pickle)


@register_tower("timm-tiny", "image", tiny=True, description="timm test_vit (tiny ViT for tests)",
                example_input=_example)
def timm_tiny_tower(weights: str | None = None, img_size: int | None = None,
                    trust_pickle: bool = False) -> TimmImageTower:
    """timm's ``test_vit``: a few thousand parameters, for tests and the demo."""
    return TimmImageTower("test_vit", weights=weights, img_size=img_size, trust_pickle=trust_pickle)
