"""Slide encoders by name: one resolver for every kind of slide encoder ``medvl slide embed`` runs.

:func:`load_slide_encoder` asks each registered source, in registration order, whether it claims the spec and loads
the encoder with the first that does. medvl registers ``checkpoint`` (:mod:`medvl.pathology.bag_checkpoint`: a
trained medvl model with a bag tower, e.g. LV-MAE); published slide encoders (model cards) register the same way::

    @register_slide_source("card")
    class CardSource:
        def matches(self, spec): ...
        def load(self, spec): return SlideEncoder(...)

Every source returns a :class:`SlideEncoder`: the label recorded with the embeddings, its width, the feature width
it reads and ``encode(features [N, D], coords [N, 2] level-0, attrs) -> [embed_dim]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from medvl.config import Config
from medvl.errors import ConfigError
from medvl.registry import Registry

__all__ = ["SLIDE_ENCODER_SOURCES", "SlideEncoder", "SlideEncoderSpec", "load_slide_encoder",
           "register_slide_source"]


@dataclass
class SlideEncoderSpec(Config):
    """Which slide encoder embeds the slides: ``name`` (a checkpoint folder, or what another source claims) and the
    ``device`` it runs on (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

    name: str
    device: str = "auto"


@dataclass
class SlideEncoder:
    """A ready slide encoder.

    Attributes:
        name: the label recorded with the embeddings (a resolved checkpoint folder).
        embed_dim: width of the slide embedding.
        feature_dim: width of the tile features it reads (``None``: any).
        encode: ``(features [N, D] float32, coords [N, 2] level-0, attrs) -> [embed_dim]``.
        modality: the modality recorded with the embeddings.
    """

    name: str
    embed_dim: int
    feature_dim: int | None
    encode: Callable[[np.ndarray, np.ndarray, dict[str, Any]], np.ndarray]
    modality: str = "bag"
    warnings: list[str] = field(default_factory=list)


class SlideEncoderSource(Protocol):
    def matches(self, spec: SlideEncoderSpec) -> bool: ...

    def load(self, spec: SlideEncoderSpec) -> SlideEncoder: ...


#: source name -> object with ``matches(spec)`` and ``load(spec)``; tried in registration order
SLIDE_ENCODER_SOURCES: Registry[SlideEncoderSource] = Registry(
    "slide encoder source", builtins=("medvl.pathology.bag_checkpoint",))


def register_slide_source(name: str):
    """Class decorator registering a slide encoder source (an instance is stored)."""

    def decorator(cls):
        SLIDE_ENCODER_SOURCES.add(name, cls())
        return cls

    return decorator


def load_slide_encoder(spec: SlideEncoderSpec) -> SlideEncoder:
    """The slide encoder ``spec`` names, from the first source that claims it; a clear error otherwise."""
    for _name, source in SLIDE_ENCODER_SOURCES.items():
        if source.matches(spec):
            return source.load(spec)
    raise ConfigError(f"no slide encoder '{spec.name}': give a medvl checkpoint folder with a bag tower (e.g. the "
                      f"model of an LV-MAE run); sources: {', '.join(SLIDE_ENCODER_SOURCES.names())}")
