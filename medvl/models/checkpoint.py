"""Checkpoint folders: the layout and the writer (:func:`medvl.models.load_checkpoint` reads them back).

A model checkpoint is a folder::

    model.safetensors     every parameter and buffer of the MultiModalModel
    config.json           {"format": "medvl-model", "medvl_version": ..., "model": ModelConfig,
                           "preprocessing": {modality: transform config}, "domains": {modality: DataDomain},
                           "random_weights": {modality: bool}}
    medvl_version         the medvl version that wrote it
    tokenizer files       (tokenizer.json, vocab.txt, ...) of the text tower

``preprocessing`` holds the image transform of the image tower (always: the training data's for a trained model,
else the one its data config describes) and the CT chain of a volume tower trained with one; ``domains`` the
training data's domain per tower; ``random_weights`` which towers hold a random initialisation.

The folder is written beside its final place and renamed into it, so a crash never leaves a half-written checkpoint
under the final name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medvl import __version__
from medvl.atomic import atomic_dir
from medvl.errors import ConfigError, InputError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONFIG",
    "FROM_CHECKPOINT",
    "WEIGHTS",
    "checkpoint_config",
    "checkpoint_tower",
    "is_checkpoint",
    "recorded_random_weights",
    "read_checkpoint_config",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "medvl-model"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def _tower_kwargs(spec_options: dict[str, Any], tower: Any) -> dict[str, Any]:
    if hasattr(tower, "checkpoint_kwargs"):
        return tower.checkpoint_kwargs()
    # the checkpoint carries the weights: do not point the rebuilt tower at the original weight file
    return {k: v for k, v in spec_options.items() if k not in ("weights", "pretrained", "checkpoint_path")}


def checkpoint_config(model: Any) -> dict[str, Any]:
    """The model config as written to ``config.json`` (tower options that rebuild the structure without weights)."""
    cfg = model.config.to_dict()
    for modality, spec in cfg["towers"].items():
        spec["options"] = _tower_kwargs(spec["options"], model.towers[modality])
    return cfg


def training_record(model: Any) -> dict[str, Any]:
    """What the checkpoint records besides the structure: preprocessing, data domains and random towers."""
    from medvl.models.transforms import tower_transform

    prep = dict(getattr(model, "preprocessing", {}) or {})
    if "image" in model.towers:
        prep["image"] = tower_transform(model.towers["image"]).to_dict()
    return {"preprocessing": prep, "domains": dict(getattr(model, "domains", {}) or {}),
            "random_weights": dict(getattr(model, "random_weights", {}) or {})}


def recorded_random_weights(meta: dict[str, Any]) -> dict[str, bool]:
    """Per modality, whether a checkpoint's towers hold random weights (older checkpoints: ``untrained`` marks a
    pipeline's seeded model; otherwise their weights were trained)."""
    towers = meta.get("model", {}).get("towers", {})
    recorded = meta.get("random_weights")
    if isinstance(recorded, dict):
        return {m: bool(recorded.get(m, False)) for m in towers}
    return dict.fromkeys(towers, bool(meta.get("untrained")))


def save_checkpoint(model: Any, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a :class:`MultiModalModel`) as a checkpoint folder, atomically; return the folder."""
    from safetensors.torch import save_model

    folder = Path(folder)
    cfg = checkpoint_config(model)
    tokenizers: dict[str, str] = {}
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / WEIGHTS), metadata={"format": "pt", "medvl_version": __version__})
        for modality, tower in model.towers.items():
            if hasattr(tower, "save_tokenizer"):
                sub = "." if modality == "text" else f"tokenizer_{modality}"
                (tmp / sub).mkdir(exist_ok=True)
                tower.save_tokenizer(tmp / sub)
                tokenizers[modality] = sub
        meta = {"format": CHECKPOINT_FORMAT, "medvl_version": __version__, "model": cfg, "tokenizers": tokenizers,
                **training_record(model), **(extra or {})}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "medvl_version").write_text(__version__ + "\n", encoding="utf-8")
    return folder


def is_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file()


def read_checkpoint_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, checked to be a medvl model checkpoint."""
    folder = Path(folder)
    if not is_checkpoint(folder):
        raise InputError(folder, f"not a medvl checkpoint folder (needs {WEIGHTS} and {CONFIG})")
    try:
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(folder / CONFIG, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise InputError(folder / CONFIG, f"not a medvl model config (format is not '{CHECKPOINT_FORMAT}')")
    return meta


#: tower name meaning "this modality's tower of a medvl checkpoint folder" (``options: {path: RUN/model}``): a
#: domain-adapted text tower plugged into another recipe, for one
FROM_CHECKPOINT = "checkpoint"


def checkpoint_tower(modality: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The tower spec (name and options, tokenizer inside the folder), the weights, and whether they are a random
    initialisation, of ``modality``'s tower in the checkpoint folder ``options['path']``; the recipe's own projection
    is kept by the caller."""
    from medvl.models.weights import load_state_file

    if set(options) - {"path"} or not options.get("path"):
        raise ConfigError(f"tower '{FROM_CHECKPOINT}' ({modality}) takes one option, path: a medvl checkpoint folder")
    folder = Path(str(options["path"])).expanduser()
    meta = read_checkpoint_config(folder)
    towers = meta["model"]["towers"]
    if modality not in towers:
        raise InputError(folder, f"the checkpoint has no {modality} tower (it has: {', '.join(towers)})")
    spec = dict(towers[modality])
    spec["options"] = dict(spec.get("options") or {})
    sub = meta.get("tokenizers", {}).get(modality)
    if sub is not None:
        spec["options"]["tokenizer_path"] = str((folder / sub).resolve())
    prefix = f"towers.{modality}."
    # the reader every checkpoint load uses: a damaged file is one clear InputError
    state = {k[len(prefix):]: v for k, v in load_state_file(folder / WEIGHTS).items() if k.startswith(prefix)}
    return spec, state, recorded_random_weights(meta).get(modality, False)
