"""Slide encoders by name: one resolver for every kind of slide encoder ``medvl slide embed`` runs.

:func:`load_slide_encoder` walks :data:`SLIDE_ENCODER_SOURCES` in registration order and loads the encoder with the
first source that claims the spec. medvl registers ``card`` (the published slide encoders of ``medvl models list
--modality slide``, medvl's own architectures or, with ``trust_remote_code``, the hub's code) and ``checkpoint``
(:mod:`medvl.pathology.bag_checkpoint`: a trained medvl model with a bag tower, e.g. an LV-MAE run's); another
source registers the same way::

    @register_slide_source("name")
    class MySource:
        def matches(self, spec): ...
        def load(self, spec): return SlideEncoder(...)

Every source returns a :class:`SlideEncoder`: the label recorded with the embeddings (resume and provenance compare
it), what the encoder needs from the feature file (:class:`SlideRequirements`) and ``encode(feats, grid, attrs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.registry import Registry

__all__ = ["SLIDE_ENCODER_SOURCES", "SlideEncoder", "SlideEncoderSpec", "SlideRequirements", "load_slide_encoder",
           "register_slide_source"]


@dataclass
class SlideEncoderSpec(Config):
    """Which slide encoder embeds the slides.

    Attributes:
        name: a slide model card (``medvl models list --modality slide``) or what another source claims.
        weights: local weights (file or folder); ``None`` uses the model installed in the store.
        trust_pickle: accept weight files that need full unpickling.
        trust_remote_code: run the hub code shipped with the weights instead of medvl's implementation.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    """

    name: str
    weights: str | None = None
    trust_pickle: bool = False
    trust_remote_code: bool = False
    device: str = "auto"


@dataclass
class SlideRequirements:
    """What a slide encoder needs from a feature file (``None``: anything goes).

    Attributes:
        tile_encoder: the tile encoder card whose features it reads.
        feature_dim: the width of those features.
        mpp: µm per pixel of the tiling, accepted within ``mpp_tolerance`` (relative).
        tile_px: tile side in pixels at ``mpp``.
        coords: ``level0`` (level-0 coordinates and ``patch_size_level0`` are used) or ``none``.
        magnification: the objective magnification ``mpp`` corresponds to (for messages).
    """

    tile_encoder: str | None = None
    feature_dim: int | None = None
    mpp: float | None = None
    tile_px: int | None = None
    coords: str = "none"
    magnification: float | None = None
    mpp_tolerance: float = 0.1


@dataclass
class SlideEncoder:
    """A ready slide encoder.

    Attributes:
        name: the label recorded with the embeddings.
        embed_dim: width of the slide embedding.
        requirements: what the feature file must hold.
        encode: ``(features [N, D] float32, grid [N, 2] int64, attrs) -> [embed_dim]``.
        grid_limit: grid positions must be below this per axis (``None``: no limit).
        title: how messages name it (the card name).
    """

    name: str
    embed_dim: int
    requirements: SlideRequirements
    encode: Callable[[np.ndarray, np.ndarray, dict[str, Any]], np.ndarray]
    grid_limit: int | None = None
    warnings: list[str] = field(default_factory=list)
    title: str = ""


class SlideEncoderSource(Protocol):
    def matches(self, spec: SlideEncoderSpec) -> bool: ...

    def load(self, spec: SlideEncoderSpec) -> SlideEncoder: ...


#: source name -> object with ``matches(spec)`` and ``load(spec)``; tried in registration order
SLIDE_ENCODER_SOURCES: Registry[SlideEncoderSource] = Registry(
    "slide encoder source", builtins=("medvl.pathology.bag_checkpoint",))  # add the modules of new sources here


def register_slide_source(name: str):
    """Class decorator registering a slide encoder source (an instance is stored)."""

    def decorator(cls):
        SLIDE_ENCODER_SOURCES.add(name, cls())
        return cls

    return decorator


def load_slide_encoder(spec: SlideEncoderSpec) -> SlideEncoder:
    """The slide encoder ``spec`` names, from the first source that claims it; a clear error listing the slide
    cards otherwise."""
    for _name, source in SLIDE_ENCODER_SOURCES.items():
        if source.matches(spec):
            return source.load(spec)
    from medvl.models.catalogue import list_cards

    known = ", ".join(c.name for c in list_cards("slide"))
    raise ConfigError(f"unknown slide encoder '{spec.name}'; slide model cards: {known} "
                      "(or a medvl checkpoint folder with a bag tower, e.g. the model of an LV-MAE run)")


def _remote_call(card, model, inputs: dict[str, Any]):
    """Call the hub model's own encode method with the inputs its card names."""
    method = getattr(model, card.remote_code.encode)
    out = method(*[inputs[name] for name in card.remote_code.inputs])
    return out[card.remote_code.output_key] if card.remote_code.output_key else out


@register_slide_source("card")
class CardSource:
    """Published slide encoders described by model cards."""

    def matches(self, spec: SlideEncoderSpec) -> bool:
        from medvl.models.catalogue import find_card

        card = find_card(spec.name)
        return card is not None and card.modality == "slide"

    def load(self, spec: SlideEncoderSpec) -> SlideEncoder:
        import torch

        from medvl.models.published import card_weights_label, resolve_card
        from medvl.pathology.extract import resolve_device

        card = resolve_card(spec.name)
        device = resolve_device(spec.device)
        remote = spec.trust_remote_code and card.remote_code is not None
        model, limit = (_load_remote(card, spec) if remote else _load_own(card, spec))
        model = model.to(device).eval()
        s = card.slide
        needs = SlideRequirements(s.tile_encoder, s.feature_dim, s.mpp, s.tile_px, s.coords, s.magnification,
                                  s.mpp_tolerance)

        def encode(feats: np.ndarray, grid: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(device)[None]
            g = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.int64)).to(device)[None]
            with torch.inference_mode():
                if remote:
                    coords = torch.from_numpy(np.asarray(attrs["_coords"], dtype=np.int64)).to(device)[None]
                    out = _remote_call(card, model, {"features": x, "coords": coords,
                                                     "patch_size_level0": int(attrs.get("patch_size_level0") or 0)})
                else:
                    out = model.encode((x, g))
            return out.reshape(-1).float().cpu().numpy()

        label = card_weights_label(card, spec.weights) + (":remote-code" if remote else "")
        return SlideEncoder(label, int(card.embedding.dim), needs, encode, limit, title=card.name)


def _load_own(card, spec: SlideEncoderSpec):
    from medvl.errors import InputError
    from medvl.models.published import load_card_encoder

    try:
        encoder = load_card_encoder(card, spec.weights, trust_pickle=spec.trust_pickle)
    except InputError as exc:
        if card.remote_code is None:
            raise
        raise InputError(exc.path, f"{exc.problem}; a hub folder of '{card.remote_code.hub_id}' runs with its own code "
                                   "under --trust-remote-code") from None
    limit = getattr(encoder.backbone.module, "grid_limit", None)
    return encoder, (limit() if callable(limit) else None)


def _load_remote(card, spec: SlideEncoderSpec):
    from pathlib import Path

    from medvl.models.builders import BuildContext, build_backbone
    from medvl.models.store import ModelStore

    folder = Path(spec.weights) if spec.weights else ModelStore().weights_path(card.name)
    context = BuildContext(folder if folder.is_dir() else folder.parent, trust_remote_code=True)
    backbone = build_backbone("hf-remote", {"encode": card.remote_code.encode}, context)
    return backbone.module, None
