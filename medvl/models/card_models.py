"""Vision-language models by card name: a card's image encoder joined with the text tower its weights folder holds.

``medvl zeroshot --model CARD`` and ``medvl index build --model CARD`` go through :func:`card_joint_model`. The image
side is the card's own encoder (:func:`medvl.models.published.load_card_encoder`: the same weights, preprocessing and
output as ``medvl slide extract --encoder CARD``), and the model's identity is the card's weights label, so features
extracted with the card are accepted and features of any other encoder are refused.

The text side is named by the card (``zero_shot.text_builder``) and built from the published files of the same
folder by an entry of :data:`TEXT_BUILDERS`. A card without one (its text tower is not in medvl, or its embedding is
not in the image-text space) cannot serve as a zero-shot model: :func:`card_joint_model` says so and why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medvl.errors import ConfigError, InputError
from medvl.models.card import ModelCard
from medvl.registry import Registry

__all__ = ["TEXT_BUILDERS", "card_joint_model", "zero_shot_problem"]

#: ``text_builder`` name -> ``(card, weights folder) -> text tower`` (its ``embed_dim`` is the joint width)
TEXT_BUILDERS: Registry[Callable[[ModelCard, Path], Any]] = Registry("card text tower")


@TEXT_BUILDERS.register("hf-clip-text")
def _hf_clip_text(card: ModelCard, folder: Path) -> Any:
    """The text side of a Hugging Face ``CLIPModel`` folder (``config.json``, weights, tokenizer files)."""
    from medvl.models.pretrained import hf_clip_text

    if not (folder / "config.json").is_file():
        raise InputError(folder, f"card '{card.name}': the text tower needs the folder's config.json (a Hugging "
                                 "Face CLIPModel folder)")
    return hf_clip_text(path=str(folder))


@TEXT_BUILDERS.register("open-clip-text")
def _open_clip_text(card: ModelCard, folder: Path) -> Any:
    """The text side of an open_clip folder (``open_clip_config.json`` with ``model_cfg``, and the state dict)."""
    from medvl.models.card_weights import find_weight_file
    from medvl.models.pretrained import open_clip_text

    config = folder / "open_clip_config.json"
    if not config.is_file():
        raise InputError(folder, f"card '{card.name}': the text tower needs the folder's open_clip_config.json")
    model_cfg = json.loads(config.read_text())
    return open_clip_text(model_cfg.get("model_cfg", model_cfg), str(find_weight_file(card, folder)))


def zero_shot_problem(card: ModelCard) -> str | None:
    """Why ``card`` cannot serve as a zero-shot model (``None``: it can)."""
    spec = card.zero_shot
    if card.modality == "slide":
        return "it is a slide encoder (zero-shot scores tiles or images against text)"
    if not spec.joint_space:
        return (f"its embedding is not in an image-text space (the projection '{spec.projection}' is not part of "
                f"medvl's build of it); text tower: {spec.text_tower or 'none'}")
    if spec.text_builder is None:
        return f"medvl cannot build its text tower ({spec.text_tower or 'none published'})"
    return None


def card_joint_model(card: ModelCard | str, weights: str | Path | None = None, *, store: str | Path | None = None,
                     trust_pickle: bool = False, trust_remote_code: bool = False) -> Any:
    """A :class:`~medvl.models.MultiModalModel` (``image`` + ``text``) from a vision-language card and its weights.

    Args:
        card: a card or its name (built-in, ``MEDVL_CARDS``, or installed in the store).
        weights: the weights folder; ``None`` uses the model installed in the local store.
        store: the model store folder (default: ``MEDVL_MODELS``, else the workspace's).
        trust_pickle: accept weight files that need full unpickling.
        trust_remote_code: allow hub code to run (cards that need it).

    Raises:
        ConfigError: the card cannot serve as a zero-shot model (the message says why).
        InputError: the weights are not installed or do not match the card.
    """
    from medvl.hashing import config_hash
    from medvl.models.catalogue import resolve_card
    from medvl.models.multimodal import ModelConfig, MultiModalModel, TowerSpec
    from medvl.models.published import card_weights_label, load_card_encoder, weights_folder

    card = resolve_card(card, store=store)
    problem = zero_shot_problem(card)
    if problem is not None:
        raise ConfigError(f"model card '{card.name}' cannot serve as a zero-shot model: {problem}")
    image = load_card_encoder(card, weights, store=store, trust_pickle=trust_pickle,
                              trust_remote_code=trust_remote_code)
    folder = weights_folder(card, weights, store)
    text = TEXT_BUILDERS.get(str(card.zero_shot.text_builder))(card, folder if folder.is_dir() else folder.parent)
    if int(text.embed_dim) != image.embed_dim:
        raise InputError(folder, f"card '{card.name}': the text tower gives {text.embed_dim}-d vectors, the image "
                                 f"encoder {image.embed_dim}-d")
    config = ModelConfig(towers={"image": TowerSpec(f"card:{card.name}", projection="none"),
                                 "text": TowerSpec(str(card.zero_shot.text_builder), projection="none")},
                         embed_dim=image.embed_dim)
    model = MultiModalModel(config, towers={"image": image, "text": text}).eval()
    label = card_weights_label(card, weights, store)  # what `slide extract --encoder CARD` records
    model.identity = {"source": card.name, "name": label, "weights": label, "config": config_hash(card.to_dict())}
    return model
