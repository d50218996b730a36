"""``create_model``: a model from a registered name, a checkpoint folder, or a :class:`ModelConfig`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from medvl.errors import InputError
from medvl.models.checkpoint import CONFIG, WEIGHTS, read_checkpoint_config
from medvl.models.multimodal import ModelConfig, MultiModalModel
from medvl.models.weights import load_weights_into
from medvl.models.zoo import get_model_config

__all__ = ["create_model", "load_checkpoint"]


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Any:
    """Rebuild the :class:`MultiModalModel` saved in ``folder`` and load its weights (strictly)."""
    folder = Path(folder)
    meta = read_checkpoint_config(folder)
    model_cfg = meta["model"]
    for modality, sub in meta.get("tokenizers", {}).items():
        model_cfg["towers"][modality]["options"]["tokenizer_path"] = str((folder / sub).resolve())
    config = ModelConfig.from_dict(model_cfg, source=str(folder / CONFIG))
    model = MultiModalModel(config)
    load_weights_into(model, folder / WEIGHTS)
    return model.to(device).eval()


def create_model(name_or_dir: str | Path | Any, device: str | torch.device = "cpu") -> Any:
    """Build a :class:`MultiModalModel` from a registered name, a checkpoint folder, or a ``ModelConfig``."""
    if isinstance(name_or_dir, ModelConfig):
        return MultiModalModel(name_or_dir).to(device)
    path = Path(str(name_or_dir)).expanduser()
    if path.is_dir():
        return load_checkpoint(path, device)
    if os.sep in str(name_or_dir) or path.suffix:
        raise InputError(path, "no such checkpoint folder")
    return MultiModalModel(get_model_config(str(name_or_dir))).to(device)
