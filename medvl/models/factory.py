"""``create_model``: a model from a registered name, a checkpoint folder, or a :class:`ModelConfig`.

A checkpoint brings its weights and what it was trained with: each tower carries the preprocessing of its training
data (the image tower its transform), the data domain, and whether its weights are random. A model built from a
name or a config has towers whose weights are a random initialisation unless a tower loads a weights file; using it
needs ``random_weights=True`` (``--random-weights``), so random weights are never used by accident.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from medvl.errors import ConfigError, InputError
from medvl.hashing import config_hash
from medvl.models.checkpoint import CONFIG, WEIGHTS, read_checkpoint_config, recorded_random_weights
from medvl.models.multimodal import ModelConfig, MultiModalModel
from medvl.models.transforms import ImageTransformConfig
from medvl.models.weights import load_weights_into
from medvl.models.zoo import get_model_config
from medvl.provenance import RANDOM_HINT

__all__ = ["apply_training_record", "create_model", "load_checkpoint", "require_weights"]


def _stored_preprocessing(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    prep = dict(meta.get("preprocessing") or {})
    if "volume" not in prep and meta.get("ct_preprocess"):  # checkpoints written before "preprocessing" existed
        prep["volume"] = meta["ct_preprocess"]
    return prep


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Any:
    """Rebuild the :class:`MultiModalModel` saved in ``folder`` and load its weights (strictly), with its recorded
    preprocessing, domains and random-weight flags."""
    from medvl.provenance import weights_hash

    folder = Path(folder)
    meta = read_checkpoint_config(folder)
    model_cfg = meta["model"]
    # the config is hashed before the tokenizer paths (where the folder lies) go in
    identity = {"source": str(folder.resolve()), "name": folder.resolve().name,
                "weights": weights_hash(folder / WEIGHTS), "config": config_hash(model_cfg)}
    for modality, sub in meta.get("tokenizers", {}).items():
        model_cfg["towers"][modality]["options"]["tokenizer_path"] = str((folder / sub).resolve())
    config = ModelConfig.from_dict(model_cfg, source=str(folder / CONFIG))
    model = MultiModalModel(config)
    load_weights_into(model, folder / WEIGHTS)
    apply_training_record(model, meta, str(folder / CONFIG))
    model.identity = identity
    return model.to(device).eval()


def apply_training_record(model: Any, meta: dict[str, Any], source: str = "config.json") -> None:
    """Give a model the record its checkpoint config holds: random-weight flags, preprocessing (the image tower
    then carries its transform) and data domains."""
    model.random_weights = recorded_random_weights(meta)
    model.preprocessing = _stored_preprocessing(meta)
    model.domains = {m: d for m, d in (meta.get("domains") or {}).items() if m in model.towers}
    if "image" in model.towers and "image" in model.preprocessing:
        model.towers["image"].transform_config = ImageTransformConfig.from_dict(
            model.preprocessing["image"], source=f"{source}: preprocessing.image")


def require_weights(model: Any, random_weights: bool, what: str, modalities: list[str] | None = None) -> None:
    """Refuse a model whose towers (those of ``modalities``, default all) hold random weights unless they were
    asked for."""
    random = [m for m, r in model.random_weights.items() if r and (modalities is None or m in modalities)]
    if random and not random_weights:
        raise ConfigError(f"{what}: the {', '.join(random)} tower(s) have no weights (a random initialisation); "
                          f"give a checkpoint or weights file, or {RANDOM_HINT}")


def create_model(name_or_dir: str | Path | Any, device: str | torch.device = "cpu", *,
                 random_weights: bool = False) -> Any:
    """Build a :class:`MultiModalModel` from a registered name, a checkpoint folder, or a ``ModelConfig``.

    Args:
        name_or_dir: a checkpoint folder, a registered model name (``list_models()``) or a :class:`ModelConfig`.
        device: where the model goes.
        random_weights: allow towers without weights (a random initialisation: training from scratch, tests).

    Raises:
        ConfigError: a tower would hold random weights and ``random_weights`` is not set.
    """
    if isinstance(name_or_dir, ModelConfig):
        return _fresh(name_or_dir, "the model config", random_weights).to(device)
    path = Path(str(name_or_dir)).expanduser()
    if path.is_dir():
        return load_checkpoint(path, device)
    if os.sep in str(name_or_dir) or path.suffix:
        raise InputError(path, "no such checkpoint folder")
    return _fresh(get_model_config(str(name_or_dir)), f"model '{name_or_dir}'", random_weights).to(device)


def _fresh(config: ModelConfig, what: str, random_weights: bool) -> Any:
    model = MultiModalModel(config)
    require_weights(model, random_weights, what)
    model.identity = {"source": what, "name": what, "weights": None, "config": config_hash(config.to_dict())}
    return model
