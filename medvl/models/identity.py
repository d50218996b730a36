"""Model prints: which weights made a set of vectors (:class:`medvl.provenance.ModelPrint`), computed one way.

A checkpoint folder's print is known without building the model (its config and the hash of its safetensors
bytes), so resume decisions stay cheap; a loaded model gives the very same print. A bare registered tower is
identified by its name, options and weights file (or its seeded random initialisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvl.hashing import config_hash
from medvl.models.checkpoint import WEIGHTS, read_checkpoint_config, recorded_random_weights
from medvl.provenance import ModelPrint, weights_hash

__all__ = ["checkpoint_print", "model_print", "tower_print"]


def checkpoint_print(folder: str | Path, modality: str, projected: bool = False) -> ModelPrint:
    """The print of a checkpoint's ``modality`` tower outputs (``projected``: through its projection)."""
    folder = Path(folder).resolve()
    meta = read_checkpoint_config(folder)
    return ModelPrint(encoder=folder.name, weights=weights_hash(folder / WEIGHTS), config=config_hash(meta["model"]),
                      modality=modality, projected=projected,
                      random_weights=recorded_random_weights(meta).get(modality, False))


def model_print(model: Any, modality: str, projected: bool = False) -> ModelPrint:
    """The print of a loaded :class:`~medvl.models.MultiModalModel`'s ``modality`` outputs (as
    :func:`checkpoint_print` for a checkpoint; a model built from a name has no weights hash)."""
    ident = getattr(model, "identity", None) or {}
    return ModelPrint(encoder=str(ident.get("name") or "model"), weights=ident.get("weights"),
                      config=str(ident.get("config") or config_hash(model.config.to_dict())), modality=modality,
                      projected=projected, random_weights=bool(model.random_weights.get(modality, False)))


def tower_print(name: str, options: dict[str, Any], modality: str, weights: str | Path | None = None,
                seed: int | None = None) -> ModelPrint:
    """The print of a bare registered tower built with ``options`` (its weights file, or a random initialisation
    drawn with ``seed``)."""
    label = name if not options.get("model_name") else f"{name}:{options['model_name']}"
    if weights is not None:
        label, digest, random = f"{label}@{Path(weights).name}", weights_hash(weights), False
    else:
        digest, random = (None if seed is None else f"random:seed={seed}"), True
    settings = {k: v for k, v in sorted(options.items()) if k not in ("weights", "trust_pickle")}
    return ModelPrint(encoder=label, weights=digest, config=config_hash({"tower": name, "options": settings}),
                      modality=modality, projected=False, random_weights=random)
