"""Config files published beside the weights, compared with the card.

Some facts do not show in the weights' key names or shapes: an activation (QuickGELU or GELU), a layer-norm epsilon,
the normalisation statistics, the interpolation. When the published folder has its own config (``config.json`` of a
transformers or timm hub repository, ``open_clip_config.json``), every value the card also states is compared:

- ``errors``: the architecture or the normalisation differ. The weights would load and give wrong embeddings, so
  loading is refused with a message naming the file, the key and both values (fix the card, or write a user card).
- ``warnings``: the interpolation differs (sources disagree on it for several models; the card's choice is kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvl.models.card import ModelCard

__all__ = ["Drift", "config_drift"]


@dataclass
class Drift:
    """Differences between a card and the config published with its weights."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


#: kwargs that JSON configs cannot hold faithfully (class references) or that do not change the embedding medvl reads
_CLASS_REFS = frozenset({"mlp_layer", "act_layer", "norm_layer", "embed_layer", "block_fn"})
_HARMLESS = frozenset({"dynamic_img_size", "num_classes"})


def _compare(drift: Drift, where: str, published: dict[str, Any], card: dict[str, Any]) -> None:
    for key, value in card.items():
        if key in _CLASS_REFS or key not in published or _same(published[key], value):
            continue
        message = f"{where} has {key}={published[key]!r}, the card says {value!r}"
        (drift.warnings if key in _HARMLESS else drift.errors).append(message)


def _preprocess(drift: Drift, where: str, card: ModelCard, mean: Any, std: Any, interpolation: Any) -> None:
    if card.tile is None:
        return
    if mean is not None and not _same(list(mean), list(card.tile.mean)):
        drift.errors.append(f"{where} has mean={list(mean)}, the card says {list(card.tile.mean)}")
    if std is not None and not _same(list(std), list(card.tile.std)):
        drift.errors.append(f"{where} has std={list(std)}, the card says {list(card.tile.std)}")
    if interpolation not in (None, card.tile.interpolation):
        drift.warnings.append(f"{where} has interpolation={interpolation!r}; the card uses "
                              f"{card.tile.interpolation!r} (sources differ; see the card's notes)")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _hf(card: ModelCard, folder: Path, drift: Drift) -> None:
    cfg = _read(folder / "config.json")
    if cfg is None:
        return
    wanted = dict(card.builder.kwargs.get("config", {}))
    if isinstance(cfg.get("vision_config"), dict):  # a CLIPModel folder: the vision side and the shared width
        cfg = {**cfg["vision_config"], "projection_dim": cfg.get("projection_dim")}
    _compare(drift, "config.json", {k: v for k, v in cfg.items() if v is not None}, wanted)


def _timm(card: ModelCard, folder: Path, drift: Drift) -> None:
    cfg = _read(folder / "config.json")
    if cfg is None or "architecture" not in cfg:
        return
    kwargs = dict(card.builder.kwargs)
    arch = str(cfg["architecture"]).split(".")[0]
    if arch != kwargs.get("model_name"):
        drift.errors.append(f"config.json has architecture={arch!r}, the card says {kwargs.get('model_name')!r}")
    _compare(drift, "config.json model_args", cfg.get("model_args") or {}, kwargs)
    pre = cfg.get("pretrained_cfg") or {}
    _preprocess(drift, "config.json pretrained_cfg", card, pre.get("mean"), pre.get("std"), pre.get("interpolation"))


def _open_clip(card: ModelCard, folder: Path, drift: Drift) -> None:
    cfg = _read(folder / "open_clip_config.json")
    if cfg is None:
        return
    model = cfg.get("model_cfg", cfg)
    kwargs = card.builder.kwargs
    _compare(drift, "open_clip_config.json", {"embed_dim": model.get("embed_dim"),
                                              "quick_gelu": bool(model.get("quick_gelu", False))},
             {"embed_dim": kwargs.get("embed_dim"), "quick_gelu": bool(kwargs.get("quick_gelu", False))})
    _compare(drift, "open_clip_config.json vision_cfg", model.get("vision_cfg") or {}, kwargs.get("vision_cfg", {}))
    pre = cfg.get("preprocess_cfg") or {}
    _preprocess(drift, "open_clip_config.json preprocess_cfg", card, pre.get("mean"), pre.get("std"),
                pre.get("interpolation"))


#: builder -> reader of the config its hub repositories publish
READERS: dict[str, Callable[[ModelCard, Path, Drift], None]] = {"hf": _hf, "timm": _timm, "open_clip": _open_clip}


def config_drift(card: ModelCard, path: str | Path) -> Drift:
    """Compare ``card`` with the config files in the weights folder ``path`` (a file's folder for a file)."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    drift = Drift()
    reader = READERS.get(card.builder.name)
    if reader is not None:
        reader(card, folder, drift)
    return drift
