"""CT encoders by model card name (``medvl ct embed --encoder CARD``): the card's CT chain and its input tensor.

A CT card's ``volume`` section says what its encoder expects: spacing, size, HU window, the range the window maps to,
the tensor layout and the padding value. :func:`card_ct_preprocess` turns it into the CT chain of
:mod:`medvl.radiology.transforms` (which records itself in the embeddings' provenance as any chain does), and
:func:`load_card_volume_encoder` adapts the chain's output ``[B, 1, D, H, W]`` in ``[0, 1]`` to the card's range and
layout before the card's encoder (:func:`medvl.models.published.load_card_encoder`) runs. What the chain cannot do is
one clear error naming the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvl.errors import ConfigError
from medvl.radiology.embed import VolumeEncoder, resolve_device
from medvl.radiology.transforms import CTPreprocessConfig

__all__ = ["card_ct_preprocess", "load_card_volume_encoder"]

#: the chain's tensor layout: channel, then z, y, x
CHAIN_LAYOUT = ("C", "D", "H", "W")


def _ct_card(name: str, store: str | Path | None = None) -> Any:
    from medvl.models.catalogue import resolve_card

    card = resolve_card(name, store=store)
    if card.modality != "ct" or card.volume is None:
        raise ConfigError(f"model card '{card.name}' is a {card.modality} encoder, not a CT encoder "
                          "(medvl models list --modality ct)")
    return card


def card_ct_preprocess(card: Any) -> CTPreprocessConfig:
    """The CT chain a CT card's ``volume`` section describes: reorientation, resampling, the HU window and the
    pad-or-crop to the card's size (no body or organ crop: the cards describe none the chain can do)."""
    v = card.volume
    low, high = (float(x) for x in v.hu_window)
    if float(v.pad_value) != float(v.scale_to[0]):
        raise ConfigError(f"model card '{card.name}': padding with {v.pad_value:g} after scaling to {v.scale_to} is "
                          "not available in medvl's CT chain (it pads below the window)")
    return CTPreprocessConfig(orientation=v.orientation, spacing=tuple(float(s) for s in v.spacing_mm), window=None,
                              level=(low + high) / 2, width=high - low, spatial_size=tuple(int(s) for s in v.size),
                              foreground_crop=False)


def _layout(card: Any) -> list[int]:
    """The permutation from the chain's ``[B, C, D, H, W]`` to the card's tensor layout."""
    axes = [a.strip() for a in card.volume.tensor_layout.split(",")]
    if sorted(axes) != sorted(CHAIN_LAYOUT):
        raise ConfigError(f"model card '{card.name}': tensor layout '{card.volume.tensor_layout}' is not an order of "
                          f"{','.join(CHAIN_LAYOUT)}")
    return [0, *(1 + CHAIN_LAYOUT.index(a) for a in axes)]


def load_card_volume_encoder(name: str, weights: str | Path | None = None, device: str = "auto", *,
                             store: str | Path | None = None, trust_pickle: bool = False) -> VolumeEncoder:
    """The :class:`VolumeEncoder` of CT card ``name`` with its weights (``None``: the model installed in the store).

    The encoder carries the card's chain as its preprocessing (it overrides the command line's, as a checkpoint's
    does) and the card's weights label as its print, so embeddings are reused only for the same card, weights and
    chain.
    """
    from medvl.hashing import config_hash
    from medvl.models.published import build_card_backbone, card_weights_label, load_card_encoder
    from medvl.provenance import ModelPrint

    card = _ct_card(name, store)
    chain, order = card_ct_preprocess(card), _layout(card)
    low, high = (float(x) for x in card.volume.scale_to)
    device = resolve_device(device)
    try:
        build_card_backbone(card, device="meta")  # an architecture medvl lacks fails here, before any weights
    except ConfigError as exc:
        raise ConfigError(f"model card '{card.name}': {exc}") from None
    model = load_card_encoder(card, weights, store=store, trust_pickle=trust_pickle, device=device)

    def encode(batch: Any) -> Any:
        return model.encode((batch * (high - low) + low).permute(*order).contiguous())

    label = card_weights_label(card, weights, store)
    printed = ModelPrint(encoder=label, weights=label, config=config_hash(card.to_dict()), modality="volume")
    return VolumeEncoder(label, encode, model.embed_dim, chain, None, device, model_print=printed)
